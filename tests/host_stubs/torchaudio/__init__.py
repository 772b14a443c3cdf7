"""Import-only stand-in for ``torchaudio``, used by the DoSSR extension's test runs.

Newer ComfyUI hosts import torchaudio at start-up (``comfy/sd.py`` ->
``comfy/ldm/lightricks/vae/audio_vae.py``; ``comfy/text_encoders/gemma4.py``), and no
torchaudio build exists for the CPU torch 2.13.0 the tests use. Only audio models and
audio nodes call it, none of which the tests run: every function and class in
``functional``/``transforms`` raises ``NotImplementedError`` when called.
``tests/hostlib/server.py`` puts it on ``PYTHONPATH`` only when no real torchaudio
can be imported.
"""

from _dossr_stub import missing_attribute as _missing_attribute

__version__ = "0.0.0+importstub"
IS_IMPORT_STUB = True

from . import functional  # noqa: E402
from . import transforms  # noqa: E402

__getattr__ = _missing_attribute(__name__)
