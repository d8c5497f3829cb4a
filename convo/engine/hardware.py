"""Device and CPU-feature choice: where a model runs and whether the CPU computes bf16 natively
and has matrix units."""
from __future__ import annotations

import os
from pathlib import Path


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_computes_bf16() -> bool:
    """Does this CPU do bf16 arithmetic in hardware (AVX512-BF16 or AMX)? Without it torch emulates
    bf16: measured on a 2-core AVX2 EPYC, a 128-row bf16 matmul took 2.5x as long as fp32 and a
    QLoRA step on the bundled model about 10x (20 s vs 1.8-2.3 s)."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: read the flags ourselves
        return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags().split()))


def cpu_has_amx() -> bool:
    """Does this CPU have AMX tiles (bf16 matrix units: Xeon Sapphire Rapids and later)? A dense bf16
    matmul there costs little more for 16 rows than for one; with AVX512-BF16 alone (Zen 4) it does
    not (see ``fastpath.default_dense_rows``)."""
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return "amx_tile" in cpu_flags().split()


def default_batch() -> int:
    """How many requests the CPU engine decodes in one step, and how many conversations a synthetic run
    makes at once: ``$CONVO_MAX_BATCH``, else 32 on CPUs with AMX tiles, else 8. On the tiles a step of
    32 rows costs about 2.5x a step of 8 (the bundled model, 2-core Emerald Rapids Xeon: 7.1 against
    18.0 ms at 128 cached positions), and the synthetic benchmark made 630 kept conversations a minute
    at 32 against 426 at 8; without them (Zen 4) 16 rows cost twice 8 and a run was no faster."""
    value = os.environ.get("CONVO_MAX_BATCH", "").strip()
    if value:
        if not value.isdigit() or not 1 <= int(value) <= 512:
            raise ValueError(f"CONVO_MAX_BATCH: expected a whole number from 1 to 512, got {value!r}")
        return int(value)
    amx = "amx_tile" in cpu_flags().split() and os.environ.get("CONVO_FAST_AMX", "1") != "0"
    return 32 if amx else 8


def cpu_flags() -> str:
    """The ``flags`` line of ``/proc/cpuinfo`` ("" where there is none)."""
    try:
        return next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return ""
