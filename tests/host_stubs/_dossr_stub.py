"""Helpers shared by the import-only stand-ins in this folder (torchvision, torchaudio).

The ComfyUI hosts import these packages at start-up, but no wheel of them loads beside
the CPU build of torch 2.13.0 that the tests use. The stand-ins provide the names the
hosts touch at import time; calling anything in them raises ``NotImplementedError``.
"""

_WHY = (
    "is not available: this is an import-only stand-in (tests/host_stubs) for test runs "
    "with CPU torch 2.13.0, where the package's wheels cannot load. Install the real "
    "package matching torch to use it."
)


def unavailable(qualname):
    """Return a function named *qualname* (``package.module.name``) that raises
    NotImplementedError when called."""

    def _unavailable(*args, **kwargs):
        raise NotImplementedError(f"{qualname}() {_WHY}")

    _unavailable.__name__ = qualname.rsplit(".", 1)[-1]
    _unavailable.__qualname__ = qualname
    _unavailable.__doc__ = f"Stand-in for {qualname}; always raises NotImplementedError."
    return _unavailable


def missing_attribute(module_name):
    """Build a module-level ``__getattr__`` that names the stand-in in its AttributeError."""

    def __getattr__(name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        raise AttributeError(f"{module_name}.{name} {_WHY}")

    return __getattr__


def any_callable(module_name):
    """Build a module-level ``__getattr__`` under which every public name is a callable
    that raises when called: for modules that hold only functions and classes, whatever
    names a host imports from them (``from torchaudio.transforms import MelScale``)."""

    def __getattr__(name):
        if name.startswith("_"):
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        return unavailable(f"{module_name}.{name}")

    return __getattr__
