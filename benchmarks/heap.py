"""``--keep-heap`` of the benchmarks: glibc keeps freed memory between steps.

By default glibc hands large freed blocks back to the system (``munmap``, heap trimming), and
the next step faults them in again page by page, zeroed. On the project's VM that is ~26k minor
faults per ResNet-50 inference step for TSN and ACTION alike (~30 ms of TSN's ~115 ms), a cost
that depends on the allocation history of the whole process. ``keep_heap()`` sets what
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647`` would, from inside the
process: blocks under 32 MB come from the heap, and the heap is never trimmed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from <malloc.h>


def keep_heap() -> None:
    """Make glibc keep freed memory; ``SystemExit`` where ``mallopt`` refuses (not glibc)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not (libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)):
        raise SystemExit("--keep-heap: mallopt refused the thresholds (it needs glibc)")
