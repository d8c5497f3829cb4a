"""The compiled decode step (``decode_step.cpp``): built once per machine, in the background.

The fast path's eager decode step dispatches about 25 small torch ops per layer from Python; for the
bundled model on 2 cores that was as much time as its int4 matmuls. ``decode_step.cpp`` runs the
same step for every layer in one call. On CPUs with AVX512-BF16 or AVX2 it also holds the matmul
kernels the fast path's int4 layers and int8 head use everywhere (``int4_mm``, ``int8_mm``: a block
of weights unpacked once for up to 12 rows with AVX512-BF16, for up to 48 (int4) or 32 (int8) with
AMX tiles, with AVX2 for 3 (int4) or 4 (int8); ``packed_kernels`` says which were built, "" where
neither; ``set_amx(False)`` turns the tiles off, as ``$CONVO_FAST_AMX=0`` does). It is compiled with the machine's C++ compiler (torch's
``cpp_extension``, ninja) into the convo cache, keyed by the source, torch's version and the CPU's
flags (it is built for this CPU), on a thread of its own that ``fastpath.engine_for`` waits for
while the model loads (about 30 s the first time on 2 cores, about a second from the cache). Where
it cannot be built (no compiler or ninja: logged once) the eager step serves.

``$CONVO_FAST_NATIVE=0`` turns it off.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

from ..settings import cache_dir
from .hardware import cpu_flags

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("decode_step.cpp")
# -fopenmp: at::parallel_for splits work only in code compiled with OpenMP (without it, one thread);
# the module then uses the libgomp torch already loaded (same soname), so one thread pool serves both
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-fopenmp"]
LDFLAGS = ["-fopenmp"]
_lock = threading.Lock()
_state: dict = {"module": None, "error": None, "thread": None}


def enabled() -> bool:
    return os.environ.get("CONVO_FAST_NATIVE", "1") != "0"


def build_key() -> str:
    """What the built module depends on: the source and flags, torch's version, the Python environment (each
    virtualenv builds its own: one build's commands would make ninja rebuild the other's) and this
    CPU's flags."""
    import sys

    import torch

    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS + LDFLAGS).encode() + torch.__version__.encode() +
                            sys.prefix.encode() + cpu_flags().encode())
    return digest.hexdigest()[:16]


def _build():
    import fcntl

    import torch.utils.cpp_extension as ext

    key = build_key()
    folder = cache_dir() / "native" / key
    folder.mkdir(parents=True, exist_ok=True)
    # One build at a time per folder, under a lock the kernel drops when its holder dies. torch's own
    # lock is a file that a killed build leaves behind, and every later build then waits on it
    # forever: holding ours, no live build can own that file, so a leftover one is removed.
    with open(folder / "convo-build.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        (folder / "lock").unlink(missing_ok=True)
        return ext.load(name=f"convo_decode_{key}", sources=[str(SOURCE)], build_directory=str(folder),
                        extra_cflags=list(CFLAGS), extra_ldflags=list(LDFLAGS), verbose=False)  # (load extends them)


def _build_in_background() -> None:
    try:
        module = _build()
    except Exception as exc:  # no compiler, no ninja, a failed build: the eager step serves
        log.warning("the compiled decode step is not available, the eager one serves: %s",
                    (str(exc).strip().splitlines() or [type(exc).__name__])[-1])
        with _lock:
            _state["error"] = exc
        return
    with _lock:
        _state["module"] = module


def start() -> None:
    """Start building (or loading the cached build) on a background thread, once per process."""
    if not enabled():
        return
    with _lock:
        if _state["thread"] is not None:
            return
        # torch's build tools imported here, not beside a model load's imports on the build thread
        # (two threads importing at once can be handed a partially initialized module)
        import torch.utils.cpp_extension  # noqa: F401

        _state["thread"] = threading.Thread(target=_build_in_background, name="convo-native-build", daemon=True)
        _state["thread"].start()


def module(wait: float | None = 0.0):
    """The built module, or None while it builds (or when it cannot be built or is turned off).
    ``wait``: seconds to wait for a build in progress (None: until it ends). Once built, this is one
    lookup (the fast path asks every decode step)."""
    if _state["module"] is not None:
        return _state["module"]
    if not enabled():
        return None
    start()
    if wait != 0.0:
        _state["thread"].join(wait)
    return _state["module"]


def loaded():
    """The built module if it is already loaded, else None (starts no build)."""
    return _state["module"]


def error() -> BaseException | None:
    """Why the build failed, if it did."""
    return _state["error"]
