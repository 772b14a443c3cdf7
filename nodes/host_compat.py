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
    have the exception class. The probe is a try/except AttributeError, the form static
    checkers (comfy-import-guard) read as a guarded reference rather than a missing one.
    """
    try:
        host_test = mm.is_oom
    except AttributeError:  # ComfyUI 0.3.64
        return isinstance(err, mm.OOM_EXCEPTION)
    return bool(host_test(err))


class WholePatcher(comfy.model_patcher.ModelPatcher):
    """A host patcher for plain torch networks: loaded whole or offloaded whole.

    A partial (low-VRAM) load moves only the layers it has room for and leaves the rest to
    be cast on the fly, which the host can do for its own ``comfy.ops`` layers but not for
    plain ``nn.Module`` ones: they would stay on the offload device and the next forward
    would mix devices. Dynamic VRAM patchers ("aimdo") likewise stream only ``comfy.ops``
    layers, so this subclasses the legacy patcher, never ``CoreModelPatcher``.
    """

    def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False,
             full_load=False, **kwargs):
        return super().load(device_to, 0, force_patch_weights, True, **kwargs)

    def partially_unload(self, device_to, memory_to_free=0, **kwargs):
        return super().partially_unload(device_to, max(memory_to_free, self.model_size()), **kwargs)


def new_patcher(module, load_device=None):
    """A :class:`WholePatcher` that loads *module* on *load_device* (default: the host's
    device) and offloads it where the host offloads a UNet."""
    return WholePatcher(module, load_device=load_device or mm.get_torch_device(),
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


def host_checks_combos() -> bool:
    """Whether the host's own validation rejects a schema-API combo value that is not one
    of its options.

    ComfyUI 0.3.64 checks only V1 option lists, so a bad value would reach ``execute``;
    newer hosts check ``COMBO`` inputs of schema-API nodes too. There is no flag for this,
    so the check looks for the combo type in the host's validator. When the source cannot
    be read the answer is no, and the nodes keep their own check (one check either way:
    the host skips inputs that a node's ``validate_inputs`` names).
    """
    import execution

    try:
        source = inspect.getsource(execution.validate_inputs)
    except (OSError, TypeError, AttributeError):
        return False
    return "Combo.io_type" in source
