"""Hand a memory-mapped checkpoint's pages back once a tensor read from them is gone.

Zip checkpoints are mapped copy-on-write (``torch.load(mmap=True)``). A page read
from the file stays in this process's resident memory for as long as the mapping
lives, even after the host has copied the tensor into its own model: loading a
5 GB file would then cost the file plus the models. When a tensor object is
freed, its whole pages are given back with ``madvise(MADV_PAGEOUT)``, which
reclaims clean file pages and never discards data (Linux 5.4+; elsewhere, or on
failure, nothing happens and memory is merely higher until the load ends).
"""

from __future__ import annotations

import ctypes
import mmap
import sys
import weakref

MADV_PAGEOUT = 21
PAGE = mmap.PAGESIZE


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def _give_back(start: int, length: int) -> None:
    first = -(-start // PAGE) * PAGE
    last = (start + length) // PAGE * PAGE
    if last > first:
        _LIBC.madvise(first, last - first, MADV_PAGEOUT)


def release_when_freed(tensors) -> None:
    """Give each tensor's whole pages back to the system once the tensor object is freed.

    Only for tensors that are views of a file mapping: data never written stays
    correct (a later read faults the page in from the file again)."""
    if _LIBC is None:
        return
    for t in tensors:
        storage = t.untyped_storage()
        weakref.finalize(t, _give_back, storage.data_ptr(), storage.nbytes())
