"""DoSSR in pure torch: schedules, solvers, networks, checkpoint I/O, color fix, tiling. Never imports ComfyUI."""
