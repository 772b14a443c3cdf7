"""Batch mode of workflows/dossr_client.py: many images, several servers, resume.

Standard library only, like the client. One module per job:

* :mod:`.inputs` - which files to upscale and where each result goes (and whether it is done).
* :mod:`.knobs` - the command-line settings (scale, steps, seed, ...) applied to a workflow.
* :mod:`.ws` - a minimal websocket reader for the server's progress messages.
* :mod:`.progress` - the live progress line and per-image log lines.
* :mod:`.report` - per-image results, the final summary and the JSON report.
* :mod:`.scheduler` - hands images to idle servers, retries, cancels on Ctrl-C.
* :mod:`.cli` - the batch options and the run itself.
* :mod:`.embedded` - starts (and stops) the ComfyUI the client sits in when no server runs;
  used by single-image runs too.

The HTTP calls (upload, queue, history, view) are the client's own; they are passed in as
the ``api`` module so that the script and its batch mode share one implementation.
"""
