"""Stand-in for ``av.subtitles.stream`` (see bench/stand_ins/README.md)."""

from .. import _Unavailable as SubtitleStream  # noqa: F401
