"""glibc keeping freed memory between steps, for the long-running commands.

With glibc's defaults, blocks above a threshold (128 KB at first) are mapped fresh and handed
back to the system when freed, and the top of the heap is trimmed. A training or evaluation step
of these models frees and reallocates its activations every time, so each step can fault them in
again page by page, zeroed. On the project's 2-core VM that was ~9-11k minor faults per step of
the ``quick`` recipe's ACTION-ResNet-18: 120 steps of ``actionlib train --recipe quick --arch
action --epochs 1 --max-steps-per-epoch 120`` took 13.3-13.9 s, and 11.8-12.3 s with the heap
kept; and ~26k faults per inference step of ResNet-50 at 112 x 112 (~30 ms of ~115). glibc
raises the thresholds as blocks are freed, and where they settle varies from run to run: a
ResNet-18 inference step measured 0 to 4.7k faults (``tests/test_heap.py`` holds them at their
initial values instead). Kept, the blocks are reused and no step faults.

``keep_heap()`` sets that for this process (``mallopt``), ``child_env()`` gives the environment
variables that set it for processes started from here (notebook kernels, data workers). The
numbers computed are the same either way; only where memory comes from changes, and the
process keeps its peak size instead of shrinking between steps. ``ACTIONLIB_KEEP_HEAP=0`` turns
both off. The ``actionlib`` command applies them for ``train``, ``eval``, ``cam`` and
``reproduce``; importing the package changes nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from <malloc.h>
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks under 32 MB come from the heap
TRIM_THRESHOLD = 2**31 - 1  # the largest mallopt takes: the heap is not trimmed


def enabled() -> bool:
    """False when ``ACTIONLIB_KEEP_HEAP=0`` or off Linux (only glibc has these settings)."""
    return os.environ.get("ACTIONLIB_KEEP_HEAP", "1") != "0" and platform.system() == "Linux"


def keep_heap() -> bool:
    """Make glibc keep freed memory in this process; True when it took the settings."""
    if not enabled():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):  # no C library by that name, or one without mallopt (not glibc)
        ok = False
    log.debug("keep_heap: %s", "glibc keeps freed memory" if ok else "not applied")
    return ok


def child_env() -> dict[str, str]:
    """glibc's environment variables for the same settings in child processes; variables the
    caller already set are left out (theirs win), and nothing when :func:`enabled` is False."""
    if not enabled():
        return {}
    wanted = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}
    return {k: v for k, v in wanted.items() if k not in os.environ}
