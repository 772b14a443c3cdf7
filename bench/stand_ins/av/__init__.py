"""Import-only stand-in for PyAV (see bench/stand_ins/README.md): names exist, nothing works."""


class StandInError(RuntimeError):
    pass


def _unavailable(*args, **kwargs):
    raise StandInError("PyAV is not installed here; bench/stand_ins/av only lets the host import")


class _Unavailable:
    def __init__(self, *args, **kwargs):
        _unavailable()

    from_ndarray = staticmethod(_unavailable)


open = _unavailable
VideoStream = AudioStream = VideoFrame = AudioFrame = _Unavailable
time_base = 1000000
