"""Checks of combo (choice) inputs at validation time, on hosts that do not check them.

ComfyUI 0.3.64 checks a combo value against its options only for inputs
declared as option lists (V1); schema-API combos reach ``execute`` unchecked,
where an unknown value would fall into some default branch. There each node lists
its combo inputs in ``validate_inputs`` and calls :func:`check_choices`, so a bad
value is reported in ``node_errors`` before anything runs. Newer hosts check
schema-API combos themselves; there :func:`combos_only` takes the nodes' own check
away so the host's applies. (Naming INT/FLOAT inputs in ``validate_inputs`` would
switch off the host's own min/max checks, so only combos are named.)
"""

from __future__ import annotations

from .host_compat import host_checks_combos

HOST_CHECKS_COMBOS = host_checks_combos()


def combos_only(node_cls):
    """Class decorator for a node whose ``validate_inputs`` checks only combos: the method
    is removed where the host checks combos itself."""
    if HOST_CHECKS_COMBOS and "validate_inputs" in vars(node_cls):
        delattr(node_cls, "validate_inputs")
    return node_cls


def check_choices(**named) -> bool | str:
    """True, or one message for every ``name=(value, options)`` whose value is not an option."""
    bad = [f"{name} must be one of {list(options)}, got {value!r}"
           for name, (value, options) in named.items() if value not in options]
    return "; ".join(bad) if bad else True
