"""Peak resident memory of this process, read where the kernel keeps it current."""


def peak_rss_kb() -> int:
    """VmHWM from /proc (getrusage's ru_maxrss can lag behind in a live process)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")
