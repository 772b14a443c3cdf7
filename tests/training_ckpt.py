"""Checkpoints in the form the authors' training writes them (PyTorch Lightning 1.4).

``torch.save`` of a Lightning checkpoint pickles, besides ``state_dict``: callbacks
keyed by their class objects, optimizer and scheduler states, numpy scalars and
hyper-parameter objects. The classes are stood in for by classes registered
under the real module names while saving, so the pickle names exactly the
globals a real file names; OmegaConf and numpy are the real libraries. The
stand-in modules are removed again after saving: a reader must cope without them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import types

import numpy as np
import torch

#: The globals a training checkpoint names beyond torch's allow-list, by where they come from.
LIGHTNING_CLASSES = {
    "pytorch_lightning.callbacks.model_checkpoint": "ModelCheckpoint",
    "pytorch_lightning.utilities.parsing": "AttributeDict",
    "model.callbacks": "ImageLogger",            # the training script's own callback
}


@contextlib.contextmanager
def stand_in_modules():
    """Modules and classes under the real names, present only while saving."""
    made = {}
    for module, cls_name in LIGHTNING_CLASSES.items():
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules:
                made[name] = sys.modules[name] = types.ModuleType(name)
        base = (dict,) if cls_name == "AttributeDict" else (object,)
        cls = type(cls_name, base, {"__module__": module})
        setattr(sys.modules[module], cls_name, cls)
    try:
        yield {name: getattr(sys.modules[m], name) for m, name in LIGHTNING_CLASSES.items()}
    finally:
        for name in made:
            sys.modules.pop(name, None)


def _hyper_parameters(classes) -> object:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": {"target": "model.cldm.ControlLDM", "params": {
        "sd_locked": True, "learning_rate": 1e-4, "control_key": "hint"}},
        "lightning": {"trainer": {"max_steps": 25001}}})
    hp = classes["AttributeDict"]()
    hp.update({"config": cfg, "args": argparse.Namespace(ckpt="dossr.ckpt", seed=231, devices=[0]),
               "learning_rate": np.float64(1e-4)})
    return hp


def training_checkpoint(tensors: dict, classes) -> dict:
    """The dictionary Lightning 1.4's ``ModelCheckpoint`` hands to ``torch.save``."""
    first = next(iter(tensors.values()))
    callback_state = {"monitor": None, "best_model_score": np.float32(0.25),
                      "best_model_path": "/train/lightning_logs/version_0/checkpoints/step=5000.ckpt",
                      "current_score": torch.tensor(0.25), "dirpath": "/train/checkpoints",
                      "best_k_models": {}, "kth_best_model_path": "", "kth_value": torch.tensor(float("inf"))}
    return {
        "epoch": 3, "global_step": 5000, "pytorch-lightning_version": "1.4.2",
        "state_dict": tensors,
        "callbacks": {classes["ModelCheckpoint"]: callback_state,
                      classes["ImageLogger"]: {"log_every_n_steps": 1000, "max_images": 4}},
        "optimizer_states": [{"state": {0: {"step": 5000, "exp_avg": torch.zeros_like(first),
                                            "exp_avg_sq": torch.zeros_like(first)}},
                              "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8,
                                                "weight_decay": 0.01, "amsgrad": False,
                                                "params": [0]}]}],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": _hyper_parameters(classes),
    }


def write_training_ckpt(path, tensors: dict, *, legacy: bool = False, extra: dict | None = None) -> None:
    """``tensors`` as a Lightning training checkpoint at ``path`` (zip, or legacy pickle)."""
    with stand_in_modules() as classes:
        ckpt = training_checkpoint(tensors, classes)
        ckpt.update(extra or {})
        torch.save(ckpt, str(path), _use_new_zipfile_serialization=not legacy)


# ----------------------------------------------------------------------------- hostile files

class SystemCall:
    """Unpickling calls os.system: creates the marker file if it ever runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class EvalCall:
    """Unpickling calls builtins.eval: creates the marker file if it ever runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').close()",))


class SubprocessCall:
    """Unpickling calls subprocess.call: creates the marker file if it ever runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (subprocess.call, (["touch", self.marker],))


HOSTILE = {"os.system": SystemCall, "builtins.eval": EvalCall, "subprocess": SubprocessCall}


def write_hostile_ckpt(path, tensors: dict, kind: str, marker, *, legacy: bool = False) -> None:
    """A training checkpoint with the same layout whose payload, if run, creates ``marker``.
    The subprocess payload sits nested inside the hyper-parameters."""
    payload = HOSTILE[kind](marker)
    if kind == "subprocess":
        extra = {"hyper_parameters": {"config": {"model": {"params": {"logger": [payload]}}}}}
    else:
        extra = {"callbacks": {"on_load": payload}}
    write_training_ckpt(path, tensors, legacy=legacy, extra=extra)
