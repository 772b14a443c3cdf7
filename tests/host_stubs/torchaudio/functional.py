"""Stand-in for ``torchaudio.functional`` (see the package docstring)."""

from _dossr_stub import any_callable as _any_callable

__getattr__ = _any_callable(__name__)
