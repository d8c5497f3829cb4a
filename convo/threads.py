"""Where heavy torch work runs: on the engine thread, or on a short-lived thread that exits.

torch's CPU ops run on OpenMP (libgomp). Every thread that ever runs a parallel op keeps its own
team of OpenMP threads for as long as it lives, and once a process holds more OpenMP threads than
cores, libgomp stops spin-waiting between parallel regions: each of the ~500 small ops of a decode
step then pays a sleep and a wake-up. Measured with the bundled model on 2 cores: the fast path
decodes 57-66 tokens/s when its engine thread is the only long-lived torch thread, and 31-37 when
the thread that loaded the model (or a request thread that ran a forward pass) still holds a team.

So one-off heavy work (loading a model, building the fast path, a scoring pass in a request
handler) goes through :func:`run_in_fresh_thread`: its team is freed when that thread exits.

The same threads also cost memory: glibc gives each thread that allocates its own malloc arena (up to
8 per core), and tensors freed in many arenas are kept, not returned. :func:`limit_malloc_arenas`
caps them for a long-running server (the app's RSS rose 1.2 MB a chat without it, flat with it).
So do oneDNN's kernels: :func:`limit_kernel_caches` bounds how many it keeps.
"""
from __future__ import annotations

import ctypes
import os
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def run_in_fresh_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a new thread that exits afterwards; its result, or its exception.

    >>> run_in_fresh_thread(lambda a, b: a + b, 2, b=3)
    5
    """
    result: list = []
    error: list[BaseException] = []

    def work() -> None:
        try:
            result.append(fn(*args, **kwargs))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    name = f"convo-{getattr(fn, '__name__', 'work')}"
    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for this process (threads started later share them); True if set.
    Does nothing where the operator chose with ``MALLOC_ARENA_MAX`` or the C library is not glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def give_back_freed_memory() -> bool:
    """Return the free pages of glibc's heaps to the OS (``malloc_trim``); True if it gave any back.
    glibc keeps what a program frees for its next allocations, and one-off work frees a lot at once:
    building the bundled model's fast path leaves about 127 MB free in the heap of the thread that
    built it (its packing temporaries), which the process held for as long as it ran. Nothing
    where the C library is not glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


KERNEL_CACHES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")  # oneDNN's and ideep's


def limit_kernel_caches(entries: int = 128) -> None:
    """Keep at most ``entries`` oneDNN kernels (in each of oneDNN's and ideep's caches; 1024 by
    default). On CPUs with AMX, torch runs bf16 matmuls on oneDNN, which builds a kernel for every
    shape it meets and keeps it, and every new prompt length is a new shape: 0.7-1.8 MB a shape for
    the bundled model's layers, 8 MB for a 4096-wide layer (2-core AMX Xeon), so a server running a
    bf16 model (a seq2seq question model, a 4-bit base's compute) grew by gigabytes as its users'
    texts varied. The fast path pads its rows to a few sizes (``fastpath.padded_rows``), so it
    stays within this bound. Must run before torch's first bf16 matmul (oneDNN reads the values
    once); does nothing to a value the operator set."""
    for name in KERNEL_CACHES:
        os.environ.setdefault(name, str(entries))
