"""Stand-in for ``av.container`` (see bench/stand_ins/README.md)."""

from . import _Unavailable as InputContainer  # noqa: F401
from . import _Unavailable as OutputContainer  # noqa: F401
