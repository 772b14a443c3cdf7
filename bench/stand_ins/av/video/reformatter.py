"""Stand-in for ``av.video.reformatter`` (see bench/stand_ins/README.md): newer hosts import
its colour enums at start-up (comfy_api/latest/_input_impl/video_types.py) and name a few
members in module-level tables. Values as in FFmpeg's enums."""

import enum


class ColorRange(enum.IntEnum):
    UNSPECIFIED = 0
    MPEG = 1
    JPEG = 2


class ColorPrimaries(enum.IntEnum):
    BT709 = 1
    UNSPECIFIED = 2
    BT2020 = 9


class ColorTrc(enum.IntEnum):
    BT709 = 1
    UNSPECIFIED = 2
    IEC61966_2_1 = 13
    SMPTE2084 = 16
    ARIB_STD_B67 = 18
