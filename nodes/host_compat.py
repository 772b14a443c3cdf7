"""What differs between the ComfyUI hosts we support, detected by feature, never by version.

Each helper asks the running host whether it has a capability and falls back to what
ComfyUI 0.3.64 offers. Every other module goes through these instead of probing the
host itself, so a host change is handled in exactly one place.
"""

from __future__ import annotations

import inspect

import comfy.model_management as mm
import comfy.model_patcher
from comfy_api.latest import io


def is_oom(err: BaseException) -> bool:
    """Whether *err* means the device ran out of memory.

    Newer hosts (``model_management.is_oom``) also recognise accelerator errors that are
    not ``OOM_EXCEPTION``, and clear the device's pending error state; older ones only
    have the exception class.
    """
    host_test = getattr(mm, "is_oom", None)
    if host_test is not None:
        return bool(host_test(err))
    return isinstance(err, mm.OOM_EXCEPTION)


def model_patcher_class():
    """The host's plain model patcher (``CoreModelPatcher`` where it exists)."""
    return getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)


def new_patcher(module):
    """A host patcher that loads *module* on the host's device and offloads it like a UNet."""
    return model_patcher_class()(module, load_device=mm.get_torch_device(),
                                 offload_device=mm.unet_offload_device())


def _schema_fields() -> set[str]:
    return set(inspect.signature(io.Schema).parameters)


def schema(**fields) -> io.Schema:
    """``io.Schema(**fields)`` without the fields this host's schema does not know.

    ``search_aliases`` and ``essentials_category`` help users find nodes on newer hosts
    and mean nothing to older ones, which would reject them as unknown arguments.
    """
    known = _schema_fields()
    return io.Schema(**{k: v for k, v in fields.items() if k in known})
