"""Optional C++ kernels, compiled on first use with the machine's C++ compiler.

``load_extension(name, source, functions)`` builds ``source`` with
``torch.utils.cpp_extension.load_inline`` into the torch extensions cache
(``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``), once per source and CPU, and
returns the module; later processes load the cached build in well under a second. Where no
compiler (or no header, or no library) is available the build fails, a warning says why, and
``None`` is returned: every caller keeps a pure-PyTorch path that computes the same numbers.

Set ``ACTIONLIB_NO_CPP=1`` to skip the kernels altogether (the tests use it to check that both
paths agree).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from collections.abc import Sequence
from types import ModuleType

log = logging.getLogger(__name__)

_CACHE: dict[tuple, ModuleType | None] = {}


def enabled() -> bool:
    """False when the environment asks for the pure-PyTorch paths (``ACTIONLIB_NO_CPP=1``)."""
    return os.environ.get("ACTIONLIB_NO_CPP", "").strip().lower() in ("", "0", "false", "no")


def _cpu_tag() -> str:
    """The build uses ``-march=native``: a cached build must not travel to another CPU."""
    flags = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            flags += next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return flags


def load_extension(
    name: str,
    source: str,
    functions: Sequence[str],
    *,
    extra_cflags: Sequence[str] = (),
    extra_ldflags: Sequence[str] = (),
) -> ModuleType | None:
    """Compile (or load from the cache) the C++ ``source`` exposing ``functions``; ``None`` if it
    cannot be built here or ``ACTIONLIB_NO_CPP`` is set. ``extra_cflags`` come after the defaults
    (``-O3 -march=native -fopenmp``), so they can take features away (the tests build the kernels
    with ``-mno-avx512f`` to run their portable loops)."""
    if not enabled():
        return None
    # str hashes are cached: a cheap lookup per call
    memo = (name, source, tuple(extra_cflags), tuple(extra_ldflags))
    if memo in _CACHE:
        return _CACHE[memo]
    flags = " ".join((*extra_cflags, "|", *extra_ldflags))
    key = hashlib.sha1((source + _cpu_tag() + flags).encode()).hexdigest()[:12]
    full = f"actionlib_{name}_{key}"
    module = None
    quiet = logging.getLogger("torch.utils.cpp_extension")  # "No CUDA runtime is found" on CPU
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension as ext

        module = ext.load_inline(
            name=full,
            cpp_sources=[source],
            functions=list(functions),
            extra_cflags=["-O3", "-march=native", "-fopenmp", *extra_cflags],
            extra_ldflags=["-fopenmp", *extra_ldflags],
            verbose=False,
        )
        log.info("loaded C++ kernels %s", full)
    except Exception as err:  # no compiler, no headers, no library: fall back, say so once
        log.warning("C++ kernels %r unavailable (%s: %s); using the pure-PyTorch path", name,
                    type(err).__name__, str(err).strip().splitlines()[-1:] or "")  # fmt: skip
    finally:
        quiet.setLevel(level)
    _CACHE[memo] = module
    return module
