"""Fast CPU decoding for Llama-family models: weight-only int4/int8 linears, a static KV cache,
and continuous batching of decode steps across concurrent requests.

transformers' generate spends most of a CPU decode step in Python overhead and in reading bf16
weights; this module runs the same maths with fewer, larger ops and 4-bit weights (lossless for
the bundled model, whose GGUF weights are 4-bit already). ``Engine`` serves many streams at once:
every step decodes one token for every active request in a single batched forward.

>>> engine = engine_for(get_model("bundled"))               # doctest: +SKIP
>>> request = engine.submit(prompt_ids, Sampling(temperature=0))  # doctest: +SKIP

Why one module: the decoder's weights, its KV cache and the scheduler that batches requests share
private state on one worker thread; split, each half would reach into the other's internals.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import native
from .hardware import cpu_has_amx, default_batch
from ..settings import Sampling
from ..threads import give_back_freed_memory, run_in_fresh_thread

log = logging.getLogger(__name__)

SUPPORTED_TYPES = ("llama", "mistral", "qwen2")
GROUP = 32  # int4 group size: GGUF Q4_0/Q4_1 blocks are 32 weights, so 4-bit GGUF weights map exactly
DONE = None  # put on a request's queue when it ends
PREFILL_TOKENS = 2048  # new prompt tokens per prefill forward (activations stay small)


def eligible(lm) -> bool:
    """Can this loaded model use the fast path? (CPU, a supported decoder, plain weights.)"""
    if os.environ.get("CONVO_FAST", "1") == "0" or lm.is_seq2seq or lm.quantized or lm.device != "cpu":
        return False
    config = lm.model.config
    if getattr(config, "model_type", None) not in SUPPORTED_TYPES or type(lm.model).__name__.startswith("Peft"):
        return False
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") != "default":
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True) and \
            config.model_type == "mistral":
        return False
    return hasattr(lm.model, "model") and hasattr(lm.model.model, "layers")


def default_weight_mode(lm) -> str:
    """int4 where the weights already are 4-bit (a GGUF Q4 source: no loss), int8 otherwise;
    a model loaded in float32 on purpose (tests, reference runs) stays unquantized.
    ``$CONVO_FAST_WEIGHTS`` (int4 | int8 | none) overrides."""
    chosen = os.environ.get("CONVO_FAST_WEIGHTS")
    if chosen:
        return chosen
    if lm.spec.dtype == "float32":
        return "none"
    source = Path(getattr(lm.model.config, "_name_or_path", "") or "") / "convo_source.json"
    if source.is_file() and "Q4" in json.loads(source.read_text()).get("gguf", ""):
        return "int4"
    return "int8"


class Linear:
    """y = x W^T (+ b) with W kept as bf16/fp32, int8 per-channel, or int4 per-group of 32.

    With ``kernels`` (the compiled module, on CPUs with AVX512-BF16 or AVX2) an int4 or int8 layer
    keeps W only in that module's packed layout and multiplies with its kernels, whose cost grows far
    less with the rows than torch's (bundled model on 2 Zen 4 cores, the 30 layers' matmuls: 8 rows
    6.5 ms against 13.4, one row 2.8 against 4.0; on an AVX2 Zen 3 a whole decode step, 1 row 7.4 ms
    against 15.8, 8 rows 21.8 against 38.9; see benchmarks/README.md).

    With ``dense_rows`` a quantized layer also keeps W in the activation dtype and uses it for calls
    of at least that many rows (prefill, batched decode steps): torch's int4/int8 CPU kernels cost
    nearly the same per row however many rows come, while a dense bf16 matmul on a CPU with bf16
    matrix units costs little more for 16 rows than for one (see ``default_dense_rows``).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, mode: str, dtype: torch.dtype,
                 dense_rows: int | None = None, kernels=None):
        self.mode, self.bias = mode, None if bias is None else bias.to(dtype)
        self.out_features = weight.shape[0]
        self.dense, self.dense_rows = None, dense_rows
        self.kernels, self.packed = None, None
        w = weight.detach().float()
        n, k = w.shape
        # the compiled kernels (native: AVX512-BF16 or AVX2 CPUs, bf16 activations) take their own packing
        packable = kernels is not None and dtype == torch.bfloat16 and n % 16 == 0 and k % 2 == 0
        if mode == "int8":
            scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-8)
            self.weight = (w / scales[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
            self.scales = scales.to(dtype)
            if packable:
                self.kernels, self.packed = kernels.int8_mm, (pack_pairs(self.weight), scales.contiguous())
                self.weight = self.scales = None  # only the packed copy is read from here on
        elif mode == "int4" and k % GROUP == 0:
            groups = w.reshape(n, k // GROUP, GROUP)
            low, high = groups.amin(-1), groups.amax(-1)
            scale = ((high - low) / 15).clamp(min=1e-8)
            q = ((groups - low[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32).reshape(n, k)
            packed = pack_int4(q, scale, low) if packable else None
            if packed is not None:
                self.kernels, self.packed = kernels.int4_mm, packed
                self.weight = self.scales = None
            else:
                self.weight = torch._convert_weight_to_int4pack_for_cpu(q, 1)
                # the kernel computes (q - 8) * scale + zero
                self.scales = torch.stack([scale.t(), (low + 8 * scale).t()], dim=-1).contiguous().to(dtype)
        else:
            self.mode = "none"
            self.weight = w.to(dtype).contiguous()
        if self.mode != "none" and dense_rows is not None:
            self.dense = w.to(dtype).contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if self.mode == "none":
            y = F.linear(x2, self.weight)
        elif self.dense is not None and x2.shape[0] >= self.dense_rows:
            rows = x2.shape[0]
            y = F.linear(F.pad(x2, (0, 0, 0, padded_rows(rows) - rows)), self.dense)[:rows]
        elif self.packed is not None:
            y = self.kernels(x2, *self.packed)
        elif self.mode == "int8":
            y = torch._weight_int8pack_mm(x2, self.weight, self.scales)
        else:
            y = torch._weight_int4pack_mm_for_cpu(x2, self.weight, GROUP, self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)


def lazy_zeros(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A zero tensor whose memory the OS provides only as it is written, 4 KB at a time: fresh
    anonymous pages (an ``mmap``) read as the one zero page until touched, where ``torch.zeros``
    writes every byte. The KV cache is made so: the bundled model's (8 slots of 2,048 positions) is
    377 MB, of which short chats touch a few MB. Huge pages are declined: numpy's zeros (used here
    before) ask for them on large arrays, and then each first write committed 2 MB, so 8 chats of 300
    tokens held 364 MB of cache where they wrote 55 MB.

    >>> t = lazy_zeros((2, 3), torch.bfloat16)
    >>> t.dtype, t.shape, t.abs().sum().item()
    (torch.bfloat16, torch.Size([2, 3]), 0.0)
    """
    import math
    import mmap

    size = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
    if size < mmap.PAGESIZE:
        return torch.zeros(shape, dtype=dtype)
    pages = mmap.mmap(-1, size)
    if hasattr(pages, "madvise") and hasattr(mmap, "MADV_NOHUGEPAGE"):
        pages.madvise(mmap.MADV_NOHUGEPAGE)
    return torch.frombuffer(pages, dtype=torch.uint8).view(dtype).view(shape)


def padded_rows(rows: int) -> int:
    """The row count a dense bf16 matmul of ``rows`` rows runs at: a multiple of 16 up to 128 rows,
    then of an eighth of the next power of two (under a quarter more rows, an eighth on average;
    24 sizes up to 2048).

    oneDNN, which runs torch's bf16 matmuls on AMX, builds and keeps a kernel for every shape it
    meets (a primitive cache and ideep's, 1024 entries each), and a prompt's length is a new shape:
    on a 2-core AMX Xeon, the bundled model's four layer shapes at 680 row counts from 12 to 2048
    grew the process by 4.5 GB and took 17.8 s, against 0.14 GB and 4.1 s padded to these sizes
    (a new shape costs about 1 ms to build, more than the padding's rows). The app grew 145 MB over
    76 short chats before (tests/test_hostile.py).

    >>> [padded_rows(n) for n in (12, 16, 17, 100, 129, 300, 2000)]
    [16, 16, 32, 112, 160, 320, 2048]
    """
    step = max(16, (1 << (rows - 1).bit_length()) >> 3)
    return -(-rows // step) * step


def pack_int4(q: torch.Tensor, scale: torch.Tensor, low: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """int4 values ``q`` [N, K] (0..15) with per-group ``scale`` and ``low`` [N, K/32] in the compiled
    kernel's layout (decode_step.cpp): 16 bytes per 16 outputs x 2 inputs, byte i holding word i in
    its low nibble and word i + 16 in its high one; scale and low as fp16 [N/16, K/32, 16] (20 bytes
    a group of 32 weights, as a GGUF's Q4_1 block, where fp32 took 24: the packed weights of the
    bundled model 67 MB against 80, at the same speed), or None where fp16 cannot hold them."""
    words = _pairs(q)  # [N/16, K/2, 32]
    packed = (words[..., :16] | (words[..., 16:] << 4)).to(torch.uint8).contiguous()

    def per_block(t: torch.Tensor) -> torch.Tensor:
        return t.float().reshape(-1, 16, t.shape[1]).transpose(1, 2).half().contiguous()

    scales, lows = per_block(scale), per_block(low)
    if not (scales.isfinite().all() and lows.isfinite().all()):
        return None
    return packed, scales, lows


def pack_pairs(q: torch.Tensor) -> torch.Tensor:
    """int8 values [N, K] as the compiled kernel takes them: [N/16, K/2, 32], the 16 outputs' pairs of inputs."""
    return _pairs(q).contiguous()


def _pairs(q: torch.Tensor) -> torch.Tensor:
    """[N, K] -> [N/16, K/2, 32]: word 2j + t of (block b, pair p) is q[16 b + j, 2 p + t]."""
    n, k = q.shape
    return q.reshape(n // 16, 16, k // 2, 2).transpose(1, 2).reshape(n // 16, k // 2, 32)


def default_dense_rows() -> tuple[int, int] | None:
    """Row counts (decoder layers, head) from which quantized layers use a dense bf16 copy, or None.

    Only on CPUs with AMX, where torch runs bf16 matmuls on the tiles (oneDNN), and only for long
    prompts: the packed kernels use the tiles too (decode_step.cpp), unpacking each weight once per
    32 rows, or dequantizing it once to bf16 per pass of 20-48 rows. Measured on a 2-core AMX Xeon
    (30 layers of the bundled model's shapes, then its 49k-row head), packed vs dense bf16: layers 32
    rows 6.5 vs 14.5 ms, 48 rows 9.3 vs 19.2, 64 rows 12.5 vs 20.1, 128 rows 24.3 vs 26.4, 160 rows
    29.6 vs 28.1, 256 rows 47.6 vs 38.2, 512 rows 96.9 vs 58.0 (before the dequantizing passes: about
    even at 48-64 rows, when the copies served from 48); head 32 rows 2.4 vs 2.9 ms, 48 rows 3.6 vs
    3.6, 128 rows 9.4 vs 5.3. (Before the packed kernels had tiles, the copies served from 12 rows and
    8.) Without bf16 units torch emulates bf16 and the copies lose (dense fp32, tried on an AVX2 EPYC:
    a batched synth run went from 33.8 to 41.0 s, bound by memory bandwidth), so there are none; nor
    with AVX512-BF16 but no AMX (Zen 4 EPYC: a dense bf16 head took 6.0 ms for one row and 8.7 ms for
    16, against the int8 kernel's 3.4 and 16.6, and the copies moved the bundled model's perplexity by
    2.5% against the fp32 reference, over the 2% bar). The copies cost 2 bytes per weight.
    ``$CONVO_FAST_DENSE``: 0 never, 1 always, else this rule.
    """
    chosen = os.environ.get("CONVO_FAST_DENSE", "auto")
    if chosen == "0" or (chosen != "1" and not cpu_has_amx()):
        return None
    return 160, 48


def default_paired_values(head_dim: int) -> bool:
    """Whether the KV cache keeps its values in key pairs (``FastModel.paired_values``): on CPUs with AMX
    (the compiled step's tiles load them from the cache as they are) and heads of a multiple of 64 dims.
    Kept as rows of ``head_dim``, they were interleaved into pairs for the tiles in every step, which
    made whole decode steps of the bundled model slower (2-core AMX Xeon, one process, taking turns): 32
    rows at 250 cached positions 15.9 ms against 14.9, at 500 23.8 against 21.8, 16 rows at 500 12.7
    against 11.5, one row at 1,000 3.5 against 3.2; at 100 the same within 2%. ``$CONVO_FAST_PAIRED``:
    0 never, 1 always, else this rule (``CONVO_FAST_AMX=0`` too turns it off: without the tiles, the
    pairs are summed two keys a vector)."""
    chosen = os.environ.get("CONVO_FAST_PAIRED", "auto")
    tiles = cpu_has_amx() and os.environ.get("CONVO_FAST_AMX") != "0"  # (the operator's switch: native.py)
    return chosen == "1" or (chosen != "0" and tiles and head_dim % 64 == 0)


@dataclass
class Layer:
    norm1: torch.Tensor
    qkv: Linear
    o: Linear
    norm2: torch.Tensor
    gate_up: Linear
    down: Linear


class FastModel:
    """The decoder's weights in fused, quantized form plus a static KV cache of ``slots`` rows."""

    def __init__(self, model, weights: str = "int4", slots: int = 8, max_len: int = 2048,
                 head: str | None = None, dtype: torch.dtype | None = None,
                 dense_rows: tuple[int, int] | None | str = "auto", kernels=None,
                 paired_values: bool | None = None):
        """``kernels``: the compiled module (``native.module()``); where it has the packed matmuls
        (AVX512-BF16 or AVX2), the int4 layers and the int8 head use them (eager and compiled steps alike)."""
        config = model.config
        # Quantized weights need bf16 activations: torch's int4/int8 CPU kernels are vectorized for
        # bf16 only (measured here: fp32 inputs take a reference path about 25x slower).
        self.dtype = dtype or (model.dtype if weights == "none" else torch.bfloat16)
        if dense_rows == "auto":
            dense_rows = default_dense_rows() if self.dtype == torch.bfloat16 else None
        layer_rows, head_rows = dense_rows or (None, None)
        self.kernels = kernels if getattr(kernels, "packed_kernels", "") else None
        # Decode attention (one query a row) in bf16 only with AMX tiles (16 rows x 216 keys: 533 us fp32
        # with the conversion, 203 us bf16; AMX Xeon). Elsewhere fp32, the conversion included: where bf16
        # is emulated 4-6x faster (16 rows x 300 keys: 4.6 -> 0.8 ms a layer, AVX2 EPYC), and also with
        # AVX512-BF16 but no AMX (Zen 4 EPYC, whole decode steps of the bundled model: 8 rows x 500 keys
        # 178 -> 58 ms, 8 x 100 70 -> 34 ms, 1 x 500 36 -> 18 ms).
        self.decode_attn_dtype = self.dtype if cpu_has_amx() else torch.float32
        head = head or ("int8" if weights in ("int4", "int8") else weights)
        self.n_heads = config.num_attention_heads
        self.n_kv = getattr(config, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.eps = config.rms_norm_eps
        self.max_len = min(max_len, getattr(config, "max_position_embeddings", max_len))
        self.slots = slots
        inner = model.model
        self.embed = inner.embed_tokens.weight.detach().to(self.dtype)
        self.layers = [self._layer(layer, weights, layer_rows) for layer in inner.layers]
        self.norm = inner.norm.weight.detach().to(self.dtype)
        # The GGUF keeps token embeddings (tied to the head) at 8 bits, so the head gets int8.
        self.head = Linear(model.get_output_embeddings().weight, None, head, self.dtype, head_rows, self.kernels)
        rope = getattr(config, "rope_parameters", None) or {}
        theta = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))
        inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        freqs = torch.outer(torch.arange(self.max_len, dtype=torch.float32), inv_freq)
        angles = torch.cat([freqs, freqs], dim=-1)
        self.cos, self.sin = angles.cos().to(self.dtype), angles.sin().to(self.dtype)
        shape = (len(self.layers), slots, self.n_kv, self.max_len, self.head_dim)
        self.paired_values = default_paired_values(self.head_dim) if paired_values is None else paired_values
        """The values are kept as the compiled step's AMX tiles take them: each head's two positions at a
        time, a pair ``[head_dim, 2]`` (position t's value i at ``[t // 2, i, t % 2]``), with room for whole
        blocks of 32 positions. Slots' values are read and written through ``values`` and ``put_values``
        (the op-by-op step writes its rows' one position each itself)."""
        room = -(-self.max_len // 32) * 32
        self.k_cache = lazy_zeros(shape, self.dtype)
        paired_shape = (*shape[:3], room // 2, self.head_dim, 2)
        self.v_cache = lazy_zeros(paired_shape if self.paired_values else shape, self.dtype)
        self.native_weights = self._native_weights()
        # the same with the layers' dense copies, for steps of their many rows (AMX CPUs)
        self.native_dense = self._native_weights(dense=True) if self.layers[0].qkv.dense is not None else None

    def _layer(self, layer, weights: str, dense_rows: int | None) -> Layer:
        attn, mlp = layer.self_attn, layer.mlp
        qkv_w = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
        biases = [getattr(p, "bias", None) for p in (attn.q_proj, attn.k_proj, attn.v_proj)]
        qkv_b = torch.cat([b.detach() for b in biases]) if all(b is not None for b in biases) else None
        return Layer(
            norm1=layer.input_layernorm.weight.detach().to(self.dtype),
            qkv=Linear(qkv_w, qkv_b, weights, self.dtype, dense_rows, self.kernels),
            o=Linear(attn.o_proj.weight, None, weights, self.dtype, dense_rows, self.kernels),
            norm2=layer.post_attention_layernorm.weight.detach().to(self.dtype),
            gate_up=Linear(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]), None, weights, self.dtype,
                           dense_rows, self.kernels),
            down=Linear(mlp.down_proj.weight, None, weights, self.dtype, dense_rows, self.kernels),
        )

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # normalized in fp32 (as transformers does), scaled in the activation dtype; one fused op
        # instead of five small ones (each op costs dispatch time at one token per step)
        return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    @torch.inference_mode()
    def prefill(self, slot: int, ids: list[int], start: int = 0) -> torch.Tensor:
        """Run ``ids[start:]`` into ``slot``'s cache (positions before ``start`` are already there,
        e.g. copied from the prefix cache); return the logits after the last token ([1, vocab])."""
        return self.prefill_many([(slot, ids, start)])

    @torch.inference_mode()
    def prefill_many(self, segments: list[tuple[int, list[int], int]],
                     picks: list[list[int]] | None = None) -> torch.Tensor:
        """Prefill several prompts in one forward: ``(slot, ids, start)`` each. Their new tokens go
        through every linear layer together, as one sequence (the linears treat tokens alike); only
        attention runs prompt by prompt. Returns the logits after each prompt's last token [n, vocab],
        or with ``picks`` after the new tokens each names (indexes into its new tokens), in order."""
        picks = picks or [[len(ids) - start - 1] for _, ids, start in segments]
        return self._forward_segments(segments, picks)

    @torch.inference_mode()
    def logits(self, ids: list[int], slot: int = 0) -> torch.Tensor:
        """Next-token logits at every position of ``ids`` ([T, vocab]); for perplexity checks."""
        return self._forward_segments([(slot, ids, 0)], None)

    def native_supported(self) -> bool:
        """Can the compiled step run this model (int4 layers, bf16 activations, not turned off)?"""
        return self.native_weights is not None

    def native_args(self, batch: int) -> list | None:
        """The per-layer tensors the compiled step (``native``) takes for a step of ``batch`` rows
        (the dense copies from their row count on), or None when it cannot run."""
        first = self.layers[0].qkv
        if first.dense is not None and batch >= first.dense_rows:
            return self.native_dense
        return self.native_weights

    def _native_weights(self, dense: bool = False) -> list[list[torch.Tensor]] | None:
        """One list per argument of ``decode_layers`` (in its order), each with one tensor a layer;
        ``dense``: the layers' dense bf16 copies (no scales, no lows) in place of the int4 weights."""
        if not native.enabled() or self.dtype != torch.bfloat16 or any(
                lin.mode != "int4" for layer in self.layers for lin in (layer.qkv, layer.o, layer.gate_up, layer.down)):
            return None
        no_bias, no_lows = torch.empty(0, dtype=self.dtype), torch.empty(0)

        def weights(lin: Linear) -> tuple:  # (weight, scales, lows): the packed kernel's, or torch's and no lows
            if dense:
                return lin.dense, no_lows, no_lows
            return lin.packed if lin.packed is not None else (lin.weight, lin.scales, no_lows)

        per_layer = [(layer.norm1, *weights(layer.qkv), no_bias if layer.qkv.bias is None else layer.qkv.bias,
                      *weights(layer.o), layer.norm2, *weights(layer.gate_up), *weights(layer.down))
                     for layer in self.layers]
        return [list(argument) for argument in zip(*per_layer)]

    def can_mix(self, rows: int) -> bool:
        """Can one compiled step take ``rows`` rows, some of them prompts' new tokens (``decode``
        with ``slots``)? Only the compiled step makes that cheaper than a prefill of their own."""
        return self.native_args(rows) is not None and native.module() is not None

    @torch.inference_mode()
    def decode(self, tokens: list[int], lengths: list[int], slots: list[int] | None = None,
               pick: list[int] | None = None) -> torch.Tensor:
        """One step: row ``i`` feeds ``tokens[i]`` at position ``lengths[i]`` (its slot's cache length
        before it) of slot ``slots[i]`` (default: slot ``i``). Rows may share a slot at consecutive
        positions (a prompt's new tokens fed with other rows' next tokens; each row attends to its
        slot up to its own position). Returns the logits of the rows in ``pick`` (default every row),
        ``[len(pick), vocab]``. Runs the compiled step when it is built (``native``), else the same
        maths op by op."""
        args = self.native_args(len(tokens))
        compiled = native.module() if args is not None else None
        if compiled is not None:
            rows = torch.arange(len(tokens)) if slots is None else torch.tensor(slots)
            x = compiled.decode_layers(self.embed[torch.tensor(tokens)], torch.tensor(lengths), rows, self.k_cache,
                                       self.v_cache, self.cos, self.sin, *args, self.n_heads, self.n_kv,
                                       self.head_dim, self.eps, self.norm)  # normed by the final norm too
            if pick is not None:
                x = x[torch.tensor(pick)]
            return self.head(x).float()
        return self.decode_eager(tokens, lengths, slots, pick)

    @torch.inference_mode()
    def decode_eager(self, tokens: list[int], lengths: list[int], slots: list[int] | None = None,
                     pick: list[int] | None = None) -> torch.Tensor:
        """``decode`` op by op from Python (the reference the compiled step is tested against)."""
        batch, span = len(tokens), max(lengths) + 1
        positions = torch.tensor(lengths)
        x = self.embed[torch.tensor(tokens)][:, None]
        cos, sin = self.cos[positions][:, None, None], self.sin[positions][:, None, None]
        mask = None
        if len(set(lengths)) > 1 or slots is not None:
            mask = (torch.arange(span)[None, :] <= positions[:, None])[:, None, None, :]
        rows = torch.arange(batch) if slots is None else torch.tensor(slots)
        nq, nk = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        attn_dtype = self.decode_attn_dtype
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x, nq, nk, cos, sin)
            k_cache = self.k_cache[i]
            k_cache[rows, :, positions] = k[:, :, 0]
            if self.paired_values:
                self.v_cache[i][rows, :, positions // 2, :, positions % 2] = v[:, :, 0]
            else:
                self.v_cache[i][rows, :, positions] = v[:, :, 0]
            if slots is None:
                keys, values = k_cache[:batch, :, :span], self.values((i, slice(0, batch)), span)
            else:  # each row's own slot (rows sharing one see each other's keys, the mask keeps it causal)
                keys, values = k_cache[rows, :, :span], self.values((i, rows), span)
            attn = F.scaled_dot_product_attention(q.to(attn_dtype), keys.to(attn_dtype), values.to(attn_dtype),
                                                  attn_mask=mask, enable_gqa=self.n_kv != self.n_heads)
            x = self._mlp(layer, x + layer.o(attn.to(x.dtype).transpose(1, 2).reshape(batch, 1, nq)))
        x = x[:, -1]
        if pick is not None:
            x = x[torch.tensor(pick)]
        return self.head(self._rms(x, self.norm)).float()

    def _qkv(self, layer: Layer, x, nq: int, nk: int, cos, sin):
        """Queries, keys and values [B, heads, T, D] of ``x`` [B, T, hidden], rotated."""
        batch, steps = x.shape[:2]
        qkv = layer.qkv(self._rms(x, layer.norm1))
        q = qkv[..., :nq].view(batch, steps, self.n_heads, self.head_dim).transpose(1, 2)
        k = qkv[..., nq:nq + nk].view(batch, steps, self.n_kv, self.head_dim).transpose(1, 2)
        v = qkv[..., nq + nk:].view(batch, steps, self.n_kv, self.head_dim).transpose(1, 2)
        return self._rope(q, cos, sin), self._rope(k, cos, sin), v

    def _mlp(self, layer: Layer, x):
        gate, up = layer.gate_up(self._rms(x, layer.norm2)).chunk(2, dim=-1)
        return x + layer.down(F.silu(gate) * up)

    def _forward_segments(self, segments, picks: list[list[int]] | None) -> torch.Tensor:
        """The logits after the new tokens of each segment that ``picks`` names (all with None)."""
        new = [ids[start:] for _, ids, start in segments]
        if any(not tokens for tokens in new):
            raise ValueError("prefill: every prompt needs at least one new token")
        positions = torch.cat([torch.arange(start, len(ids)) for _, ids, start in segments])
        x = self.embed[torch.tensor([t for tokens in new for t in tokens])][None]
        cos, sin = self.cos[positions][None, None], self.sin[positions][None, None]
        bounds, offset = [], 0
        for tokens in new:
            bounds.append((offset, offset + len(tokens)))
            offset += len(tokens)
        # queries at start.. attend to every cached position up to their own (a causal mask offset by start)
        masks = [None if start == 0 else (torch.arange(len(ids))[None, :] <= torch.arange(start, len(ids))[:, None])
                 for _, ids, start in segments]
        nq, nk = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x, nq, nk, cos, sin)
            parts = []
            for (slot, ids, start), (a, b), mask in zip(segments, bounds, masks):
                self.k_cache[i, slot, :, start:len(ids)] = k[0, :, a:b]
                self.put_values((i, slot), start, v[0, :, a:b])
                keys = self.k_cache[i, slot:slot + 1, :, :len(ids)]
                values = self.values((i, slice(slot, slot + 1)), len(ids))
                parts.append(F.scaled_dot_product_attention(q[:, :, a:b], keys, values, attn_mask=mask,
                                                            is_causal=mask is None,
                                                            enable_gqa=self.n_kv != self.n_heads))
            attn = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
            x = self._mlp(layer, x + layer.o(attn.transpose(1, 2).reshape(1, offset, nq)))
        if picks is not None:
            x = x[:, torch.tensor([a + i for (a, _), rows in zip(bounds, picks) for i in rows])]
        return self.head(self._rms(x[0], self.norm)).float()

    def values(self, index: tuple, length: int) -> torch.Tensor:
        """The values of positions ``0..length-1`` in the part of the cache that ``index`` picks from its
        first two dimensions (layers, slots): ``[..., kv_heads, length, head_dim]``, a view of the cache,
        or with ``paired_values`` a tensor of its own."""
        part = self.v_cache[index]
        if not self.paired_values:
            return part[..., :length, :]
        out = torch.empty(*part.shape[:-3], length, self.head_dim, dtype=part.dtype)
        out[..., 0::2, :] = part[..., :(length + 1) // 2, :, 0]  # (two strided copies: a transpose and
        out[..., 1::2, :] = part[..., :length // 2, :, 1]        # reshape took 0.42 ms a slot, these 0.33)
        return out

    def put_values(self, index: tuple, start: int, values: torch.Tensor) -> None:
        """Write ``values`` ``[..., kv_heads, T, head_dim]`` at positions ``start..start+T-1`` of the part
        of the cache that ``index`` (ints and slices) picks from its first two dimensions."""
        part, end = self.v_cache[index], start + values.shape[-2]
        if not self.paired_values:
            part[..., start:end, :] = values
            return
        for parity in (0, 1):  # the even positions, then the odd ones: one strided view each
            first = start + (parity - start) % 2
            if first < end:
                count = len(range(first, end, 2))
                part[..., first // 2:first // 2 + count, :, parity] = values[..., first - start::2, :]

    def read_slot(self, slot: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.values((slice(None), slot), length)
        return self.k_cache[:, slot, :, :length].clone(), values if self.paired_values else values.clone()

    def write_slot(self, slot: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        length = keys.shape[2]
        self.k_cache[:, slot, :, :length] = keys
        self.put_values((slice(None), slot), 0, values)

    def move_slot(self, src: int, dst: int, length: int) -> None:
        """Keep active requests in the first slots (so a decode step reads one contiguous view)."""
        self.k_cache[:, dst, :, :length] = self.k_cache[:, src, :, :length]
        room = (length + 1) // 2 if self.paired_values else length  # (a paired odd length's last pair whole)
        self.v_cache[:, dst, :, :room] = self.v_cache[:, src, :, :room]


def sample_next(logits: torch.Tensor, sampling: Sampling, seen: list[int], generator) -> int:
    """One token from ``logits`` [vocab] (``sample_rows`` for one row; ``seen``: the ids so far)."""
    seen_ids = torch.tensor(sorted(set(seen))) if seen else None
    return sample_rows(logits[None], [sampling], [seen_ids], [generator])[0]


_NO_IDS = torch.empty(0, dtype=torch.long)


def sample_rows(logits: torch.Tensor, samplings: list[Sampling], seen: list[torch.Tensor | None],
                generators: list, favour: list | None = None, bias: list[float] | None = None,
                native_sampler: bool = True) -> list[int]:
    """One token for each row of ``logits`` [rows, vocab] (changed in place), each with its own
    sampling, seen ids (for the repetition penalty) and generator, in transformers' processor order:
    repetition penalty, temperature, top-k, top-p; greedy where the temperature is 0. ``favour``: a
    row's distinct token ids (or None) whose logits get its ``bias`` added first (a Steered prompt).

    Every step is one batched op over the rows (one at a time, sampling cost about 0.34 ms a row, a
    sixth of a batched step). Top-p runs on the top-k survivors only (the same distribution, without
    sorting a 49k vocabulary); the draw inverts each row's cumulative distribution at a uniform number
    from the row's own generator, so a seeded request samples the same whatever runs beside it.

    Where the compiled module is built (``native``; ``native_sampler=False`` turns it off), its
    ``sample_rows`` does the same in one call: a heap of the top-k instead of ``torch.topk``, no
    per-step tensors. The torch ops below stay its reference.
    """
    favour = favour or [None] * len(samplings)
    bias = bias or [0.0] * len(samplings)
    compiled = native.loaded() if native_sampler else None
    if compiled is not None and logits.dtype == torch.float32 and logits.is_contiguous():
        uniform = [float(torch.rand(1, generator=g)) if s.do_sample else 0.0 for s, g in zip(samplings, generators)]
        return compiled.sample_rows(logits, [_NO_IDS if ids is None else ids for ids in seen],
                                    [s.repetition_penalty for s in samplings], [s.temperature for s in samplings],
                                    [s.top_k for s in samplings], [s.top_p for s in samplings], uniform,
                                    [list(ids or ()) for ids in favour], [float(b) for b in bias])
    for row, ids in enumerate(favour):
        if ids:
            logits[row, list(ids)] += bias[row]
    rows, vocab = logits.shape
    penalized = [i for i, s in enumerate(samplings) if s.repetition_penalty != 1.0 and seen[i] is not None]
    if penalized:
        counts = torch.tensor([len(seen[i]) for i in penalized])
        which = torch.repeat_interleave(torch.tensor(penalized), counts)
        columns = torch.cat([seen[i] for i in penalized])
        factor = torch.repeat_interleave(torch.tensor([samplings[i].repetition_penalty for i in penalized]), counts)
        picked = logits[which, columns]
        logits[which, columns] = torch.where(picked < 0, picked * factor, picked / factor)
    tokens = [0] * rows
    greedy = [i for i, s in enumerate(samplings) if not s.do_sample]
    if greedy:
        for i, token in zip(greedy, logits[greedy].argmax(-1).tolist()):
            tokens[i] = token
    drawn = [i for i, s in enumerate(samplings) if s.do_sample]
    if not drawn:
        return tokens
    chosen = [samplings[i] for i in drawn]
    keep = torch.tensor([s.top_k if s.top_k and s.top_k < vocab else vocab for s in chosen])
    k = int(keep.max())
    values, order = torch.topk(logits[drawn], k) if k < vocab else torch.sort(logits[drawn], descending=True)
    if int(keep.min()) < k:  # rows with a smaller top-k than the largest
        values = values.masked_fill(torch.arange(k)[None, :] >= keep[:, None], float("-inf"))
    values = values / torch.tensor([s.temperature for s in chosen])[:, None]
    top_p = torch.tensor([s.top_p if s.top_p < 1.0 else float("inf") for s in chosen])[:, None]
    if bool((top_p < 1.0).any()):
        probs = values.softmax(-1)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        values = values.masked_fill(probs.cumsum(-1) - probs > top_p, float("-inf"))
    cumulative = values.softmax(-1).cumsum(-1)
    uniform = torch.cat([torch.rand(1, generator=generators[i]) for i in drawn])
    picks = torch.searchsorted(cumulative, (uniform * cumulative[:, -1])[:, None]).clamp(max=k - 1)
    for i, token in zip(drawn, order.gather(1, picks)[:, 0].tolist()):
        tokens[i] = token
    return tokens


class PrefixCache:
    """KV of recent prompts, so a prompt that starts like an earlier one (the same system prompt,
    or the next turn of the same chat) only prefills what is new. LRU within a byte budget."""

    def __init__(self, budget_bytes: int = 256 * 2**20, min_tokens: int = 8):
        self.budget, self.min_tokens = budget_bytes, min_tokens
        self.entries: list[tuple[tuple[int, ...], torch.Tensor, torch.Tensor]] = []
        self._arrays: dict[tuple[int, ...], np.ndarray] = {}  # each entry's ids as an array, to compare fast

    def _best(self, ids: list[int] | np.ndarray) -> tuple[int, int | None]:
        """(length, index) of the entry sharing the longest start with ``ids``, leaving at least one
        token to prefill; (0, None) under ``min_tokens``."""
        wanted = np.asarray(ids[:len(ids) - 1], dtype=np.int64)
        best, best_index = 0, None
        for index, (key, _, _) in enumerate(self.entries):
            array = self._arrays.get(key)
            if array is None:  # (entries put in from outside: tests)
                array = self._arrays[key] = np.asarray(key, dtype=np.int64)
            shared = _shared_start(array, wanted)
            if shared >= self.min_tokens and shared > best:
                best, best_index = shared, index
        return best, best_index

    def lookup(self, ids: list[int]) -> tuple[int, torch.Tensor | None, torch.Tensor | None]:
        """The longest cached prefix of ``ids`` (leaving at least one token to prefill)."""
        best, best_index = self._best(ids)
        if best_index is None:
            return 0, None, None
        entry = self.entries.pop(best_index)
        self.entries.append(entry)  # most recently used last
        return best, entry[1][:, :, :best], entry[2][:, :, :best]

    def longest(self, ids: list[int]) -> int:
        """How many tokens ``lookup`` would give (without marking the entry used)."""
        return self._best(ids)[0]

    def store(self, ids: list[int], keys: torch.Tensor, values: torch.Tensor, replaces: list[int] | None = None) -> None:
        """Keep the KV of ``ids``; ``replaces`` names an entry it extends (a prompt, now with its reply)."""
        if len(ids) < self.min_tokens:
            return
        dropped = {tuple(ids), tuple(replaces or ())}
        self.entries = [e for e in self.entries if e[0] not in dropped]
        self.entries.append((tuple(ids), keys, values))
        while len(self.entries) > 1 and sum(k.nbytes + v.nbytes for _, k, v in self.entries) > self.budget:
            self.entries.pop(0)
        self._arrays = {key: self._arrays.get(key) for key, _, _ in self.entries}
        self._arrays[self.entries[-1][0]] = np.asarray(ids, dtype=np.int64)


def _shared_start(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading ids two id arrays share."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


@dataclass
class Request:
    """One generation in the engine; tokens arrive on ``out`` (then ``DONE``)."""

    prompt: list[int]
    sampling: Sampling
    stop: object = None
    out: queue.Queue = field(default_factory=queue.Queue)
    seen: list[int] = field(default_factory=list)
    seen_buffer: torch.Tensor = field(init=False)
    """The distinct ids of ``seen`` (for the repetition penalty) in its first ``seen_count`` places,
    written through a numpy view as new ones come (room for the prompt's and every generated one)."""
    seen_count: int = field(init=False)
    seen_set: set = field(init=False)
    """The same ids as a set (a lookup per sampled token instead of a tensor op)."""
    generated: int = 0
    length: int = 0
    next_token: int | None = None
    generator: torch.Generator | None = None
    submitted: float = field(default_factory=time.monotonic)
    error: BaseException | None = None
    notify: queue.Queue | None = None
    """Also gets the request itself when it ends (one queue can wait for the first of many)."""
    end_ids: frozenset = frozenset()
    """Tokens after which the request ends (they are emitted): those holding a stop string."""
    feed: int | None = None
    """While set, the prompt's tokens from this position on are still to be fed (in the next step)."""
    favour: tuple[int, ...] | None = None
    """Distinct token ids whose logits get ``bias`` added until one of them is sampled (a Steered prompt)."""
    bias: float = 0.0
    complete: dict[int, tuple[int, ...]] | None = None
    """For a favoured id that begins a word of several tokens: the word's other tokens, fed after it."""
    forced: list[int] = field(default_factory=list)
    """Tokens that come next whatever the logits say (the rest of a favoured word begun)."""
    nonempty: bool = False
    """The first token is neither a stop id nor an end id: the reply has text (``Engine._emit``)."""
    slot: int = -1
    """Its row of the KV cache while it is active."""
    score_from: int | None = None
    """A scoring request (``Engine.score``): the prompt's tokens from here on are a continuation whose
    mean log-probability is put on ``out`` (one float); nothing is generated."""
    cached: int = 0
    """How many of the prompt's tokens came from the prefix cache."""
    keep: bool = True
    """Keep the prompt with its reply when it ends, parked in its slot or in the prefix cache (for a
    reply that a later prompt continues: a chat's next turn, a script's next line)."""

    def __post_init__(self):
        ids = sorted(set(self.seen))
        self.seen_buffer = torch.empty(len(ids) + self.sampling.max_new_tokens, dtype=torch.long)
        self.seen_buffer[:len(ids)] = torch.tensor(ids, dtype=torch.long)
        self.seen_count, self.seen_set, self._seen_view = len(ids), set(ids), self.seen_buffer.numpy()

    @property
    def reusable(self) -> list[int]:
        """The prompt's tokens whose keys and values may come from a cache or a parked slot (a scoring
        request needs the logits after its prompt's last token: that one is computed)."""
        return self.prompt if self.score_from is None else self.prompt[:self.score_from]

    @property
    def seen_ids(self) -> torch.Tensor | None:
        """The distinct ids seen so far (a view), or None before any."""
        return self.seen_buffer[:self.seen_count] if self.seen_count else None

    def saw(self, token: int) -> None:
        """Note a sampled token (a write into the buffer where it is new: no tensor op a token)."""
        self.seen.append(token)
        if token not in self.seen_set:
            self.seen_set.add(token)
            if self.seen_count == len(self._seen_view):  # more than the budget (never, with max_new_tokens)
                self.seen_buffer = torch.cat([self.seen_buffer, torch.empty_like(self.seen_buffer)])
                self._seen_view = self.seen_buffer.numpy()
            self._seen_view[self.seen_count] = token
            self.seen_count += 1

    def end(self) -> None:
        self.out.put(DONE)
        if self.notify is not None:
            self.notify.put(self)

    def tokens(self):
        """Yield generated token ids as they come (a scoring request: its score)."""
        while True:
            token = self.out.get()
            if token is DONE:
                if self.error:
                    raise self.error
                return
            yield token


SCORING = Sampling(temperature=0, max_new_tokens=1)  # (a scoring request samples nothing)

MIX_TOKENS = 48
"""A prompt with at most this many new tokens joins a decode step instead of a prefill of its own."""
MIX_ROWS = 96
"""At most this many rows in a decode step with prompts in it (the step's other rows wait for them)."""
MIX_ROWS_DENSE = 384
"""The same where the layers have dense bf16 copies for steps of many rows (AMX CPUs): there such a
step costs less than prefilling its prompts on their own up to a few hundred rows (bundled model,
2-core AMX Xeon, prompts of 12, 24 and 48 new tokens eight at once: 45, 77 and 122 ms against 74,
100 and 147; two of 200: 162 against 133), so eight new chat messages start in one step."""
GATHER_QUIET_S = 0.001
GATHER_MOST_S = 0.004
"""An idle engine that is handed a request waits until none more came for GATHER_QUIET_S (at most
GATHER_MOST_S in all) before its first step, so requests sent together start together: eight chat
users' handlers hand in their prompts about 0.5 ms apart (Python, one at a time), and without the
wait the first one's step ran alone while the other seven waited for it, then for a step of their
own. See ``Engine._gather``."""
ARRIVING_MOST_S = 0.03
"""How long an idle engine handed a request waits for requests announced (``Engine.arriving``) and
not yet submitted, so that a chat message's first token is not behind a step begun without it."""

class Engine:
    """Continuous batching over one FastModel: a worker thread admits waiting requests (prefill)
    and then decodes one token for every active request per step."""

    def __init__(self, fast: FastModel, stop_ids: list[int], threads: int | None = None):
        self.fast, self.stop_ids = fast, set(stop_ids)
        self.prefixes = PrefixCache()
        self.waiting: queue.Queue[Request] = queue.Queue()
        self.active: list[Request] = []
        self.wake = threading.Event()
        self.threads = threads
        self.closing: str | None = None  # "drain" or "now" once close() was called
        self.announced: dict[int, float] = {}  # thread ident -> when it announced a request (``arriving``)
        self.parked: dict[int, tuple[np.ndarray, list[int]]] = {}
        """Free slots that still hold an ended request's prompt and reply, oldest first: slot -> (the
        ids whose keys and values it holds, the prompt they extend). See ``_retire``."""
        self._end_tensors: dict[frozenset, torch.Tensor] = {}  # each set of end ids seen, with the stop ids (``_ends``)
        self.park_slots = True
        """False: an ended request's slot goes to the prefix cache at once, as before slots were parked
        (tests compare both)."""
        self.worker = threading.Thread(target=self._run, name="convo-engine", daemon=True)
        self.worker.start()

    @contextmanager
    def arriving(self):
        """Announce a request this thread will submit soon (a chat handler does, on starting), until
        it submits one or leaves. An idle engine handed other requests meanwhile waits for the
        announced ones (ARRIVING_MOST_S at most) and admits them together. Through the app, eight
        users' messages reach the handlers together, but the handlers hand their prompts in over
        10-20 ms (Python, one at a time, on cores the engine shares): the first two began a step
        alone and the other six waited for it before a step of their own."""
        me = threading.get_ident()
        self.announced[me] = time.monotonic()
        try:
            yield
        finally:
            self.announced.pop(me, None)

    def submit(self, prompt: list[int], sampling: Sampling, stop=None, notify: queue.Queue | None = None,
               end_ids: frozenset = frozenset(), favour: list[int] | None = None, bias: float = 0.0,
               keep: bool = True, complete: dict[int, tuple[int, ...]] | None = None,
               nonempty: bool = False) -> Request:
        limit = self.fast.max_len - sampling.max_new_tokens - 1
        prompt = prompt[-max(1, limit):]
        request = Request(prompt=prompt, sampling=sampling, stop=stop, seen=list(prompt), notify=notify,
                          end_ids=end_ids, favour=tuple(dict.fromkeys(favour)) if favour else None, bias=bias,
                          keep=keep, complete={i: tuple(r) for i, r in complete.items() if r} if complete else None,
                          nonempty=nonempty)
        if sampling.seed is not None:
            request.generator = torch.Generator().manual_seed(sampling.seed)
        return self._enqueue(request)

    def score(self, prompt: list[int], continuation: list[int]) -> Request:
        """Measure the mean log-probability per token of ``continuation`` after ``prompt``; the
        request's ``tokens()`` yields it (one float). Its rows join a decode step (or a prefill) like
        a prompt's new tokens; with ``prompt`` in the prefix cache only the continuation is computed."""
        if not continuation:
            raise ValueError("score: the continuation is empty")
        prompt = prompt[-max(1, self.fast.max_len - len(continuation) - 1):]
        return self._enqueue(Request(prompt=prompt + continuation, sampling=SCORING, score_from=len(prompt),
                                     keep=False))

    def _enqueue(self, request: Request) -> Request:
        if self.closing or not self.worker.is_alive():
            raise RuntimeError("this engine is closed")
        self.waiting.put(request)
        # this thread's announcement ends once its request waits and before the wake: a worker never
        # finds the announcement gone and the request missing (it would start without it); finding
        # both, it waits for this wake
        self.announced.pop(threading.get_ident(), None)
        self.wake.set()
        return request

    def _run(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            self._loop()

    def close(self, drain: bool = False, timeout: float = 30.0) -> None:
        """Stop the worker: at once (the step in progress finishes, every request's stream ends), or
        with ``drain`` once the requests already submitted are done (without waiting for that).

        Engines are closed at interpreter exit: a worker still inside a torch op while the
        interpreter tears down aborts the process ("terminate called without an active exception").
        """
        self.closing = "drain" if drain and self.closing != "now" else "now"
        self.wake.set()
        with _engines_lock:
            if self in _engines:
                _engines.remove(self)
        if not drain and self.worker.is_alive() and threading.current_thread() is not self.worker:
            self.worker.join(timeout)

    def _loop(self) -> None:
        while True:
            idle = not self.active and self.waiting.empty()
            if self.closing == "now" or (self.closing and idle):
                break
            if idle:
                self.wake.wait()
                self.wake.clear()
                self._gather()
                continue
            try:
                self._admit()
                if self.active:
                    self._step()
            except BaseException as exc:  # never let one bad request kill the engine
                log.exception("engine step failed")
                for request in self.active + self._drain():
                    request.error = exc
                    request.end()
                self.active = []
        for request in self.active + self._drain():
            request.end()
        self.active = []

    def _gather(self) -> None:
        """After idling: wait while requests keep arriving (each within GATHER_QUIET_S of the last,
        GATHER_MOST_S in all, until the slots are full), so that they are admitted together; and
        while requests are announced (``arriving``), until they come or ARRIVING_MOST_S has passed
        (since the wait began, and since each was announced: an older announcement is stale).
        (``benchmarks/concurrency.py --engine``, three interleaved pairs of runs on a 2-core AMX
        Xeon: 8 users' worst time to first token 20-23 ms against 26-29 without; one user's 9-12
        against 8-12. Through the app, Gradio hands the requests on 5-15 ms apart: there the
        announcements merge them.)"""
        started, seen = time.monotonic(), self.waiting.qsize()
        while not self.closing and len(self.active) + seen < self.fast.slots:
            now = time.monotonic()
            due = [at + ARRIVING_MOST_S for at in list(self.announced.values()) if at + ARRIVING_MOST_S > now]
            if due and now - started < ARRIVING_MOST_S:  # woken by their submits
                self.wake.wait(min(max(due), started + ARRIVING_MOST_S) - now)
            else:
                left = GATHER_MOST_S - (now - started)
                if left <= 0 or not self.wake.wait(min(GATHER_QUIET_S, left)):
                    return
            self.wake.clear()
            seen = self.waiting.qsize()

    def _drain(self) -> list[Request]:
        drained = []
        while not self.waiting.empty():
            drained.append(self.waiting.get_nowait())
        return drained

    def _admit(self) -> None:
        """Move waiting requests into free slots. A prompt with few new tokens (after the prefix
        cache) joins the next decode step (``feed``), where its tokens cost about a decode row each;
        the others are prefilled now, together in forwards of their own."""
        admitted = []
        while len(self.active) + len(admitted) < self.fast.slots and not self.waiting.empty():
            admitted.append(self.waiting.get_nowait())
        if not admitted:
            return
        claims = self._claim_parked(admitted)
        used = {request.slot for request in self.active} | {slot for slot, _ in claims.values()}
        free = [slot for slot in range(self.fast.slots) if slot not in used and slot not in self.parked]
        segments, picks, rows = [], [], len(self.active)
        mix_rows = MIX_ROWS_DENSE if self.fast.native_dense is not None else MIX_ROWS
        for request in admitted:
            if id(request) in claims:  # its slot already holds its prompt's start: nothing to copy
                request.slot, cached = claims[id(request)]
            else:
                cached, keys, values = self.prefixes.lookup(request.reusable)
                request.slot = free.pop(0) if free else self._unpark()
                if cached:
                    self.fast.write_slot(request.slot, keys, values)
            slot = request.slot
            request.cached = cached
            new = len(request.prompt) - cached
            if 0 < new <= MIX_TOKENS and rows + new <= mix_rows and self.fast.can_mix(rows + new):
                request.feed = request.length = cached
                rows += new
            else:
                segments.append((slot, request.prompt, cached))
                picks.append(_scored_rows(request, cached) if request.score_from is not None else [new - 1])
        prefilled = [r for r in admitted if r.feed is None]
        self.active.extend(admitted)  # the prefilled ones get their first token below
        if not segments:
            return
        logits, group, tokens = [], [], 0
        # forwards of at most PREFILL_TOKENS new tokens (or one prompt)
        for segment, pick in zip(segments + [None], picks + [None]):
            size = 0 if segment is None else len(segment[1]) - segment[2]
            if group and (segment is None or tokens + size > PREFILL_TOKENS):
                logits.extend(self.fast.prefill_many([g for g, _ in group], [p for _, p in group]))
                group, tokens = [], 0
            if segment is not None:
                group.append((segment, pick))
                tokens += size
        generating, emitted, at = [], [], 0
        for request, pick in zip(prefilled, picks):  # (the logits come in the order of the segments)
            request.length = len(request.prompt)
            own = logits[at:at + len(pick)]
            at += len(pick)
            if request.score_from is None:
                generating.append(request)
                emitted.append(own[0])
            else:
                self._scored(request, torch.stack(own))
        if generating:
            self._emit(generating, torch.stack(emitted))
        for request in generating:  # (after the first tokens: a copy, 0.3 ms for 28 tokens, 3.4 for 1,000; Zen 4)
            self.prefixes.store(request.prompt, *self.fast.read_slot(request.slot, len(request.prompt)))

    def _claim_parked(self, admitted: list[Request]) -> dict[int, tuple[int, int]]:
        """Admitted requests that continue what a parked slot holds (a chat's next turn, a script's
        next line: the prompt starts with the parked request's whole prompt): id(request) -> (that
        slot, the tokens it already holds). Other requests, a new chat with the same system prompt
        among them, take free slots or the oldest parked one, which goes to the prefix cache first, as
        every ended request did before. Where a request's best start is in a slot another one took in
        this admission (candidates of one line share their prompt), that slot goes to the prefix
        cache, and the request copies its start from there."""
        if not self.parked:
            return {}
        claims: dict[int, tuple[int, int]] = {}
        taken: dict[int, tuple[np.ndarray, list[int]]] = {}
        least = self.prefixes.min_tokens
        for request in admitted:
            ids = np.asarray(request.reusable, dtype=np.int64)
            held = {**self.parked, **taken}
            shares = {slot: _shared_start(ids_held, ids[:len(ids) - 1]) for slot, (ids_held, _) in held.items()}
            # (the same prompt again continues it too: a line sampled again; a shorter one does not)
            continues = [slot for slot in self.parked if len(ids) >= len(self.parked[slot][1])
                         and shares[slot] >= max(min(len(self.parked[slot][1]), len(ids) - 1), least)]
            pick = max(continues, key=shares.get, default=None)
            best = max(shares, key=shares.get)
            if pick is not None:
                taken[pick] = self.parked.pop(pick)
                claims[id(request)] = pick, shares[pick]
            elif best in taken and shares[best] >= max(self.prefixes.longest(ids), least) + least:
                self._cache_parked(best, *taken.pop(best))  # (once: the slot holds it until the next step)
        return claims

    def _unpark(self) -> int:
        """Free the oldest parked slot, keeping what it holds in the prefix cache; returns the slot."""
        slot = next(iter(self.parked))
        self._cache_parked(slot, *self.parked.pop(slot))
        return slot

    def _cache_parked(self, slot: int, held: np.ndarray, prompt: list[int]) -> None:
        """Keep what a parked slot holds (``held``, extending ``prompt``) in the prefix cache."""
        self.prefixes.store(held.tolist(), *self.fast.read_slot(slot, len(held)), replaces=prompt)

    def forget(self) -> None:
        """Drop the prefix cache and the parked slots (while the engine is idle: tests start clean)."""
        self.prefixes.entries.clear()
        self.parked.clear()

    def _emit(self, requests: list[Request], logits: torch.Tensor) -> None:
        """Sample each request's next token from its row of ``logits`` (all rows at once) and hand it on.

        A ``nonempty`` request whose first token ends it draws again without the ids that would: so it
        samples what it would have wherever that token does not end it (a stop string cuts the reply
        it would have had), and otherwise from the rest of the distribution."""
        first = [row for row, r in enumerate(requests) if r.nonempty and not r.generated]
        before = logits[first].clone() if first else None  # (sampling changes the logits in place)
        tokens = self._sample(requests, logits)
        ended = [i for i, row in enumerate(first)
                 if tokens[row] in self.stop_ids or tokens[row] in requests[row].end_ids]
        if ended:
            rows, again = [first[i] for i in ended], before[ended]
            for i, row in enumerate(rows):
                again[i, self._ends(requests[row])] = float("-inf")
            for row, token in zip(rows, self._sample([requests[row] for row in rows], again)):
                tokens[row] = token
        for request, token in zip(requests, tokens):
            self._hand_on(request, request.forced.pop(0) if request.forced else token)

    @staticmethod
    def _sample(requests: list[Request], logits: torch.Tensor) -> list[int]:
        return sample_rows(logits, [r.sampling for r in requests], [r.seen_ids for r in requests],
                           [r.generator for r in requests], favour=[r.favour for r in requests],
                           bias=[r.bias for r in requests])

    def _ends(self, request: Request) -> torch.Tensor:
        """The ids a ``nonempty`` request's first token cannot be: the stop ids and its end ids."""
        key = request.end_ids
        if key not in self._end_tensors:  # (a pipeline's requests share one set)
            self._end_tensors[key] = torch.tensor(sorted(self.stop_ids | key), dtype=torch.long)
        return self._end_tensors[key]

    def _hand_on(self, request: Request, token: int) -> None:
        if request.favour is not None and token in request.favour:
            request.favour = None  # named: the reply goes on unsteered, once the word is finished
            request.forced = list(request.complete.get(token, ())) if request.complete else []
        request.generated += 1
        request.saw(token)
        stopped = request.stop is not None and request.stop.is_set()
        if token in self.stop_ids or stopped:
            request.next_token = None
            return
        request.out.put(token)
        ended = request.generated >= request.sampling.max_new_tokens or token in request.end_ids
        request.next_token = None if ended else token

    def _step(self) -> None:
        """One token for every active request: its next token, or a newly admitted prompt's new
        tokens (``feed``) as rows of their own in the same step, whose last row gives its first."""
        self._retire()
        if not self.active:
            return
        tokens, positions, slots, pick, scoring, generating, emitted = [], [], [], [], [], [], []
        for request in self.active:
            slot = request.slot
            if request.feed is not None:
                new = request.prompt[request.feed:]
                first = len(tokens)
                tokens += new
                positions += range(request.feed, len(request.prompt))
                slots += [slot] * len(new)
                if request.score_from is not None:
                    rows = _scored_rows(request, request.feed)
                    scoring.append((request, len(pick), len(rows)))
                    pick += [first + i for i in rows]
                    continue
            else:
                tokens.append(request.next_token)
                positions.append(request.length)
                slots.append(slot)
            generating.append(request)
            emitted.append(len(pick))
            pick.append(len(tokens) - 1)
        mixed = pick != list(range(len(tokens)))
        in_order = slots == list(range(len(slots)))  # row i in slot i: the eager step reads one view
        logits = self.fast.decode(tokens, positions, None if in_order else slots, pick if mixed else None)
        for request in self.active:
            if request.feed is not None:
                # (a fed prompt is not copied into the prefix cache now, between the step and the first
                # tokens: at most MIX_TOKENS of it are not there already, and it is stored with its reply
                # when it ends)
                request.feed, request.length = None, len(request.prompt)
            else:
                request.length += 1
        for request, at, count in scoring:
            self._scored(request, logits[at:at + count])
        if generating:
            self._emit(generating, logits if not scoring else logits[torch.tensor(emitted)])
        self._retire()

    def _scored(self, request: Request, logits: torch.Tensor) -> None:
        """A scoring request's result from the logits before each token of its continuation; its
        prompt is kept in the prefix cache (when it was not), so the other continuations only feed theirs."""
        targets = torch.tensor(request.prompt[request.score_from:])
        logprobs = torch.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None])
        request.out.put(float(logprobs.mean()))
        if request.cached < request.score_from - 1:
            self.prefixes.store(request.prompt[:request.score_from],
                                *self.fast.read_slot(request.slot, request.score_from))
        request.next_token = None  # done: it ends at the next retire

    def _retire(self) -> None:
        """Finish requests that hit a stop token, their budget, or a Stop, freeing their slots.

        The compiled step reads each row's own slot, so the others stay where they are. The eager step
        reads the first slots as one view (and gathers them otherwise, a copy of every layer's cache a
        step): there the slots are compacted."""
        rows = list(self.active)
        stays = self.fast.can_mix(self.fast.slots)  # the compiled step: each request keeps its slot
        for row, request in enumerate(rows):
            if (request.next_token is None and request.feed is None) or \
                    (request.stop is not None and request.stop.is_set()) or \
                    request.length + 1 >= self.fast.max_len:
                # The slot now holds the prompt and the reply: the next turn of a chat (or the next line
                # of a script) starts with both, so it prefills only what is new. Where slots stay put
                # the slot is parked as it is, and the next turn starts in it; a parked slot goes to the
                # prefix cache when a request needs the slot (a copy out of a slot and one back in for
                # every script line: 0.1 s of a 2.4 s synthetic run, 2-core AMX Xeon). (Every ended
                # row is read before any slot moves.)
                if request.keep and stays and self.park_slots and not request.error:
                    self.parked[request.slot] = (np.asarray(request.seen[:request.length], dtype=np.int64), request.prompt)
                elif request.keep:
                    self.prefixes.store(request.seen[:request.length], *self.fast.read_slot(request.slot, request.length),
                                        replaces=request.prompt)
                request.end()
                rows[row] = None
        if stays:  # (moves cost 0.14 s of an 8 s synthetic run)
            self.active = [request for request in rows if request is not None]
            return
        # Each freed slot below the live count takes the last live request: one copy a freed slot. (Moving
        # every later request down one slot, in order, copied up to 7 caches for each one that ended:
        # 658 copies, 0.26 s of a 9.9 s synthetic run on Zen 4.)
        last = len(rows) - 1
        for hole in range(len(rows)):
            if rows[hole] is not None:
                continue
            while last > hole and rows[last] is None:
                last -= 1
            if last <= hole:
                break
            self.fast.move_slot(rows[last].slot, hole, rows[last].length)  # (here each row is in its own slot)
            rows[last].slot = hole
            rows[hole], rows[last] = rows[last], None
        self.active = [request for request in rows if request is not None]


def _scored_rows(request: Request, start: int) -> list[int]:
    """The rows (indexes into the prompt's tokens from ``start``) whose logits predict the tokens of a
    scoring request's continuation: those after its prompt's last token, up to its last but one."""
    return list(range(request.score_from - 1 - start, len(request.prompt) - 1 - start))


_engines: list[Engine] = []
_engines_lock = threading.Lock()


@atexit.register
def close_engines() -> None:
    """Stop every engine's worker cleanly (runs at interpreter exit, before torch is torn down)."""
    with _engines_lock:
        engines = list(_engines)
    for engine in engines:
        engine.close()


def engine_for(lm) -> Engine | None:
    """The shared engine of a loaded model (built on first use), or None if it is not eligible."""
    if not eligible(lm):
        return None
    with _engines_lock:
        engine = lm.fast_engine
        if engine is None or engine.closing:
            started = time.monotonic()
            weights = default_weight_mode(lm)
            # built once per machine (about 30 s on 2 cores), then loaded from the cache in about a
            # second; waited for here, while the model loads, so every reply runs the same maths
            kernels = native.module(wait=600) if weights in ("int4", "int8") else None
            # built on a thread that exits, so the engine thread is the only one holding an OpenMP team
            fast = run_in_fresh_thread(FastModel, lm.model, weights=weights,
                                       slots=default_batch(),
                                       max_len=int(os.environ.get("CONVO_FAST_CONTEXT", "2048")), kernels=kernels)
            compiled = fast.native_supported() and kernels is not None
            give_back_freed_memory()  # the packing's temporaries
            engine = Engine(fast, _stop_ids(lm))
            lm.fast_engine = engine
            _engines.append(engine)
            log.info("fast path for %s: %s weights, %s decode step, built in %.1f s", lm.spec.label, weights,
                     "compiled" if compiled else "eager", time.monotonic() - started)
        return engine


def arriving(lm):
    """Announce a request this thread will submit to ``lm``'s engine soon, where one is built
    (``Engine.arriving``: requests sent together then start together); else nothing."""
    engine = getattr(lm, "fast_engine", None)
    return engine.arriving() if engine is not None and not engine.closing else nullcontext()


def _stop_ids(lm) -> list[int]:
    from .prompts import stop_token_ids

    return stop_token_ids(lm)
