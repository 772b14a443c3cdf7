"""Checks of combo (choice) inputs at validation time.

ComfyUI 0.3.64 checks a combo value against its options only for inputs
declared as option lists (V1); schema-API combos reach ``execute`` unchecked,
where an unknown value would fall into some default branch. Each node lists its
combo inputs in ``validate_inputs`` and calls this, so a bad value is reported
in ``node_errors`` before anything runs. (Naming INT/FLOAT inputs there would
switch off the host's own min/max checks, so only combos are named.)
"""

from __future__ import annotations


def check_choices(**named) -> bool | str:
    """True, or one message for every ``name=(value, options)`` whose value is not an option."""
    bad = [f"{name} must be one of {list(options)}, got {value!r}"
           for name, (value, options) in named.items() if value not in options]
    return "; ".join(bad) if bad else True
