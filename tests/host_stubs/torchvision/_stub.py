"""Helpers shared by the torchvision stand-in modules (see ``torchvision/__init__.py``)."""

_WHY = (
    "is not available: this 'torchvision' is an import-only stand-in "
    "(tests/host_stubs) for test runs with CPU torch 2.13.0, where the PyPI "
    "torchvision wheels cannot load. Install a real torchvision matching torch "
    "to use it."
)


def unavailable(qualname):
    """Return a function named *qualname* that raises NotImplementedError when called."""

    def _unavailable(*args, **kwargs):
        raise NotImplementedError(f"torchvision.{qualname}() {_WHY}")

    _unavailable.__name__ = qualname.rsplit(".", 1)[-1]
    _unavailable.__qualname__ = qualname
    _unavailable.__doc__ = f"Stand-in for torchvision.{qualname}; always raises NotImplementedError."
    return _unavailable


def missing_attribute(module_name):
    """Build a module-level ``__getattr__`` that names the stand-in in its AttributeError."""

    def __getattr__(name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        raise AttributeError(f"{module_name}.{name} {_WHY}")

    return __getattr__
