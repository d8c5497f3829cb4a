"""The fast CPU engine: same greedy text as transformers, continuous batching, stop, kernels."""
import math
import threading
import time
import concurrent.futures
import contextlib
import os

from dataclasses import replace

import pytest
import torch

from convo.engine import fastpath, generation, native
from convo.engine import load_model
from convo.settings import ModelSpec, Sampling

PROMPTS = ["Hello there", "What is the capital of France and why is it there?", "Birds fly south",
           "Tell me about the river and the old mill where the miller grinds wheat"]


def convo_of(text):
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def lm(tiny_causal):
    return load_model(ModelSpec(tiny_causal, dtype="float32"))


def reference(lm, prompts, sampling, monkeypatch):
    monkeypatch.setenv("CONVO_FAST", "0")
    texts = [generation.generate(lm, convo_of(p), sampling) for p in prompts]
    monkeypatch.setenv("CONVO_FAST", "1")
    return texts


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_engine_greedy_matches_transformers(lm, monkeypatch, penalty):
    greedy = Sampling(temperature=0, max_new_tokens=24, repetition_penalty=penalty)
    expected = reference(lm, PROMPTS, greedy, monkeypatch)
    assert fastpath.engine_for(lm) is not None
    assert [generation.generate(lm, convo_of(p), greedy) for p in PROMPTS] == expected
    # continuous batching: all four in one batch, mixed prompt lengths
    assert generation.generate_batch(lm, [convo_of(p) for p in PROMPTS], greedy) == expected


def test_concurrent_streams_each_get_their_own_text(lm, monkeypatch):
    greedy = Sampling(temperature=0, max_new_tokens=30, repetition_penalty=1.0)
    expected = reference(lm, PROMPTS, greedy, monkeypatch)

    def run(prompt):
        return "".join(generation.stream(lm, convo_of(prompt), greedy)).strip()

    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        assert list(pool.map(run, PROMPTS * 2)) == expected * 2


def test_engine_streams_and_stops(lm):
    stop = generation.Stop()
    pieces = []
    for piece in generation.stream(lm, convo_of("Hello"), Sampling(max_new_tokens=400, temperature=1.0, seed=0), stop=stop):
        pieces.append(piece)
        if len(pieces) == 3:
            stop.set()
    assert 3 <= len(pieces) <= 5
    engine = fastpath.engine_for(lm)
    assert not engine.active or all(r.stop is not None for r in engine.active)


def test_end_ids_end_a_request_right_after_that_token(lm):
    """A stop string's token (``end_ids``) is emitted and then its request ends: no step is spent after it."""
    engine = fastpath.engine_for(lm)
    prompt = generation._prompt_ids(lm, generation.render_prompt(lm, convo_of("Hello")))
    sampling = Sampling(temperature=1.0, max_new_tokens=16, seed=0)
    full = list(engine.submit(prompt, sampling).tokens())
    assert len(full) == 16  # the tiny model never picks its end token
    k = next(i for i in range(3, len(full) - 1) if full[i] not in full[:i])  # a token first seen at k
    request = engine.submit(prompt, sampling, end_ids=frozenset({full[k]}))
    assert list(request.tokens()) == full[:k + 1] and request.generated == k + 1


def test_favoured_tokens_are_raised_until_one_is_sampled(lm):
    """A steered request (``favour``, ``bias``) gets the bias on those tokens' logits until it samples
    one of them, then samples as it would have: the rest of the reply is unsteered."""
    engine = fastpath.engine_for(lm)
    prompt = generation._prompt_ids(lm, generation.render_prompt(lm, convo_of("Hello")))
    greedy = Sampling(temperature=0, max_new_tokens=8, repetition_penalty=1.0)
    plain = list(engine.submit(prompt, greedy).tokens())
    after = replace(greedy, max_new_tokens=7)

    def continuation(token):
        return list(engine.submit(prompt + [token], after).tokens())

    # a token the reply does not have and that greedy decoding does not just repeat after itself
    favoured = next(t for t in range(10, 400) if t not in plain and t not in engine.stop_ids
                    and set(continuation(t)) - {t})
    request = engine.submit(prompt, greedy, favour=[favoured], bias=1e4)
    steered = list(request.tokens())
    assert steered[0] == favoured and request.favour is None
    # once named, no more bias: the rest is the unsteered continuation (with the bias kept, every
    # token would be the favoured one)
    assert steered[1:] == continuation(favoured)
    assert list(engine.submit(prompt, greedy, favour=[favoured], bias=0.0).tokens()) == plain


def test_a_nonempty_request_does_not_begin_with_its_end(lm):
    """A ``nonempty`` request (a program's line) whose first token would end it draws again without the
    ids that end it; where the first token does not end it, it samples exactly what it would have."""
    engine = fastpath.engine_for(lm)
    prompt = generation._prompt_ids(lm, generation.render_prompt(lm, convo_of("Hello")))
    greedy = Sampling(temperature=0, max_new_tokens=4, repetition_penalty=1.0)
    plain = list(engine.submit(prompt, greedy).tokens())
    ends = frozenset({plain[0]})
    assert list(engine.submit(prompt, greedy, end_ids=ends).tokens()) == plain[:1]  # an end is emitted, then ends
    request = engine.submit(prompt, greedy, end_ids=ends, nonempty=True)
    tokens = list(request.tokens())
    assert tokens[0] not in ends | engine.stop_ids and len(tokens) > 1
    for seed in range(8):
        sampled = Sampling(temperature=1.0, max_new_tokens=3, seed=seed)
        free = list(engine.submit(prompt, sampled, end_ids=ends).tokens())
        kept = list(engine.submit(prompt, sampled, end_ids=ends, nonempty=True).tokens())
        assert kept == free if free[0] not in ends else kept[0] not in ends


def test_a_favoured_token_that_begins_a_word_is_followed_by_the_rest_of_it(lm):
    """A favoured first token of a word of several tokens (``complete``) is followed by the word's
    other tokens, whatever the logits say (steered towards "umbrella", the bundled model went from
    " Umb" to "Umbra"); then the reply goes on unsteered. Without the favoured token, nothing is fed."""
    engine = fastpath.engine_for(lm)
    prompt = generation._prompt_ids(lm, generation.render_prompt(lm, convo_of("Hello")))
    greedy = Sampling(temperature=0, max_new_tokens=8, repetition_penalty=1.0)
    plain = list(engine.submit(prompt, greedy).tokens())
    favoured = next(t for t in range(10, 200) if t not in plain and t not in engine.stop_ids)
    after = list(engine.submit(prompt + [favoured], replace(greedy, max_new_tokens=2)).tokens())
    rest = tuple(t for t in range(200, 300) if t not in after and t not in engine.stop_ids)[:2]
    request = engine.submit(prompt, greedy, favour=[favoured], bias=1e4, complete={favoured: rest})
    steered = list(request.tokens())
    assert steered[:3] == [favoured, *rest] and not request.forced
    assert steered[3:] == list(engine.submit(prompt + [favoured, *rest], replace(greedy, max_new_tokens=5)).tokens())
    unsteered = engine.submit(prompt, greedy, favour=[favoured], bias=0.0, complete={favoured: rest})
    assert list(unsteered.tokens()) == plain


def test_seeded_sampling_is_reproducible(lm):
    sampling = Sampling(temperature=1.0, max_new_tokens=20, seed=7)
    first = generation.generate(lm, convo_of("Hello"), sampling)
    assert generation.generate(lm, convo_of("Hello"), sampling) == first


@pytest.mark.parametrize("mode, tolerance", [("int8", 0.02), ("int4", 0.15)])
def test_quantized_linear_kernels(mode, tolerance):
    torch.manual_seed(0)
    weight, x = torch.randn(96, 128), torch.randn(5, 128)
    layer = fastpath.Linear(weight, None, mode, torch.float32)
    assert layer.mode == mode
    expected = x @ weight.t()
    error = (layer(x) - expected).abs().max() / expected.abs().max()
    assert error < tolerance


def test_int4_is_exact_for_4bit_grid_weights():
    """GGUF Q4 weights (scale * q + min per 32) survive our int4 packing without loss."""
    torch.manual_seed(0)
    q = torch.randint(0, 16, (64, 128)).float()
    q[:, ::32], q[:, 1::32] = 0, 15  # every group spans the whole 4-bit range, as Q4_1 blocks do
    scale, low = torch.rand(64, 4) * 0.02 + 0.001, torch.randn(64, 4) * 0.05
    weight = (q.reshape(64, 4, 32) * scale[..., None] + low[..., None]).reshape(64, 128)
    x = torch.randn(3, 128)
    layer = fastpath.Linear(weight, None, "int4", torch.float32)
    assert torch.allclose(layer(x), x @ weight.t(), atol=1e-4)


def test_dense_copy_serves_calls_of_many_rows():
    torch.manual_seed(0)
    weight = torch.randn(96, 128)
    layer = fastpath.Linear(weight, None, "int4", torch.float32, dense_rows=4)
    many, few = torch.randn(4, 128), torch.randn(3, 128)
    assert torch.allclose(layer(many), many @ weight.t(), atol=1e-5)  # the exact dense copy
    assert not torch.allclose(layer(few), few @ weight.t(), atol=1e-3)  # the int4 kernel
    assert fastpath.Linear(weight, None, "int4", torch.float32).dense is None
    odd = torch.randn(2, 37, 128)  # padded to 48 rows inside, 37 out
    assert layer(odd).shape == (2, 37, 96) and torch.allclose(layer(odd), odd @ weight.t(), atol=1e-5)


def test_dense_copy_multiplies_at_a_few_row_counts_only(monkeypatch):
    """oneDNN keeps a kernel per matmul shape it meets (up to 1.8 MB each for the bundled model on
    an AMX Xeon): every prompt length was a new one, and the app grew 145 MB over 76 short chats."""
    seen = []
    linear = fastpath.F.linear
    monkeypatch.setattr(fastpath.F, "linear", lambda x, w, *a: seen.append(x.shape[0]) or linear(x, w, *a))
    layer = fastpath.Linear(torch.randn(32, 64), None, "int8", torch.float32, dense_rows=12)
    for rows in range(12, 2049):
        assert layer(torch.zeros(rows, 64)).shape == (rows, 32)
    assert len(set(seen)) <= 24 and all(0 <= padded - rows < max(16, rows / 4) for rows, padded in zip(range(12, 2049), seen))


def resident_mb() -> float:
    """This process's resident memory in MB (Linux's /proc)."""
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024


RSS = 'int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024'  # the same, for child scripts


def test_kernel_caches_are_bounded_where_onednn_keeps_a_kernel_per_shape():
    """A process that multiplies bf16 at 300 row counts: on an AMX Xeon it grew 469 MB with oneDNN's
    default caches and 31 MB capped by ``limit_kernel_caches``."""
    import subprocess
    import sys

    script = f"""import sys
from convo.threads import limit_kernel_caches
if sys.argv[1] == "capped":
    limit_kernel_caches(8)
import torch, torch.nn.functional as F
torch.set_num_threads(2)
w, x = torch.randn(1024, 1024).bfloat16(), torch.randn(1024, 1024).bfloat16()
rss = lambda: {RSS}
F.linear(x[:4], w)
before = rss()
for rows in range(700, 1000):
    F.linear(x[:rows], w)
print(rss() - before)"""
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}
    grew = {way: float(subprocess.run([sys.executable, "-c", script, way], env=env, capture_output=True, text=True,
                                      check=True).stdout) for way in ("default", "capped")}
    if grew["default"] < 200:
        pytest.skip(f"this CPU's torch keeps no per-shape bf16 kernels to speak of ({grew})")
    assert grew["capped"] < 100, grew


def test_prefill_many_equals_one_prefill_each(lm):
    fast = fastpath.FastModel(lm.model, weights="none", slots=3, max_len=128)
    prompts = [lm.tokenizer(p).input_ids for p in PROMPTS[:3]]
    alone = []
    for slot, ids in enumerate(prompts):
        alone.append(fast.prefill(slot, ids)[0])
    keys = fast.k_cache.clone()
    # the third prompt's first 3 tokens are already in its slot (as from the prefix cache)
    together = fast.prefill_many([(0, prompts[0], 0), (1, prompts[1], 0), (2, prompts[2], 3)])
    assert together.shape == (3, lm.model.config.vocab_size)
    for row, expected in zip(together, alone):
        assert torch.allclose(row, expected, atol=1e-4)
    assert torch.allclose(fast.k_cache, keys, atol=1e-5)
    with pytest.raises(ValueError, match="at least one new token"):
        fast.prefill_many([(0, prompts[0], len(prompts[0]))])


def test_not_eligible_models_use_transformers(tiny_seq2seq):
    assert fastpath.engine_for(load_model(ModelSpec(tiny_seq2seq, dtype="float32"))) is None


QUALITY = __import__("json").loads((__import__("pathlib").Path(__file__).parent / "data/fastpath/quality.json").read_text())


def perplexity(logits, ids):
    import math

    return math.exp(torch.nn.functional.cross_entropy(logits[:-1].float(), torch.tensor(ids[1:])).item())


@pytest.mark.slow
def test_bundled_fast_path_quality_against_the_fp32_reference():
    """The quantized fast path (int4 layers, int8 head, bf16 activations) changes perplexity on a
    fixed text set by under 2% against transformers in fp32, and its greedy replies start with the
    same words as the reference on most prompts (see benchmarks/README.md for the figures)."""

    ref = load_model(ModelSpec("bundled", dtype="float32"))
    # torch's int4/int8 kernels, and the packed ones where this CPU has them (AVX512-BF16 or AVX2: what users get)
    for kernels in (None, native.module(wait=600)):
        fast = fastpath.FastModel(ref.model, weights="int4", slots=1, max_len=512, kernels=kernels)
        nll = {"fast": 0.0, "reference": 0.0}
        for text in QUALITY["texts"]:
            ids = ref.tokenizer(text).input_ids
            with torch.inference_mode():
                want = torch.log_softmax(ref.model(torch.tensor([ids])).logits[0].float(), -1)
                got = torch.log_softmax(fast.logits(ids).float(), -1)
            for name, logprobs in (("fast", got), ("reference", want)):
                nll[name] -= float(logprobs[:-1].gather(1, torch.tensor(ids[1:])[:, None]).sum())
            # each text (32-128 tokens: in the short ones one token's odds move it by 1-3%), and how far
            # the whole next-token distributions are (measured: 0.0017-0.0029 nats, either kernel)
            assert abs(perplexity(got, ids) / perplexity(want, ids) - 1) < 0.04
            assert float((want.exp() * (want - got)).sum(-1).mean()) < 0.005, fast.kernels
        tokens = sum(len(ref.tokenizer(text).input_ids) - 1 for text in QUALITY["texts"])
        # the text set's perplexity (measured: +0.16% torch's kernels, +0.59% the packed ones)
        assert abs(math.exp((nll["fast"] - nll["reference"]) / tokens) - 1) < 0.02, fast.kernels

    lm = load_model(ModelSpec("bundled"))
    fast = fastpath.engine_for(lm).fast
    assert fast.layers[0].qkv.mode == "int4"
    assert fast.native_supported()  # the greedy replies below come from the compiled step
    greedy = Sampling(temperature=0, max_new_tokens=20, repetition_penalty=1.0)
    os.environ["CONVO_FAST"] = "0"
    try:
        reference_text = [generation.generate(ref, convo_of(p), greedy) for p in QUALITY["prompts"]]
    finally:
        os.environ["CONVO_FAST"] = "1"
    fast_text = generation.generate_batch(lm, [convo_of(p) for p in QUALITY["prompts"]], greedy)
    same_start = sum(a.split()[:5] == b.split()[:5] for a, b in zip(reference_text, fast_text))
    assert same_start >= len(QUALITY["prompts"]) - 2, list(zip(reference_text, fast_text))


def test_prefix_cache_reuses_a_shared_start_with_identical_output(lm, monkeypatch):
    greedy = Sampling(temperature=0, max_new_tokens=16, repetition_penalty=1.0)
    system = {"role": "system", "content": "You are a curious assistant who asks about rivers, mills and birds."}
    chats = [[system, {"role": "user", "content": p}] for p in PROMPTS]
    monkeypatch.setenv("CONVO_FAST", "0")
    expected = [generation.generate(lm, c, greedy) for c in chats]
    monkeypatch.setenv("CONVO_FAST", "1")
    engine = fastpath.engine_for(lm)
    engine.forget()
    assert [generation.generate(lm, c, greedy) for c in chats] == expected
    prompt = generation._prompt_ids(lm, generation.render_prompt(lm, chats[1]))
    cached, keys, _ = engine.prefixes.lookup(prompt)
    assert cached >= 10 and keys.shape[2] == cached  # the shared system prompt is reused


def reference_distribution(logits, sampling):
    """The next-token distribution transformers' own processors give (temperature, top-k, top-p)."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    scores = logits[None].clone()
    for warper in (TemperatureLogitsWarper(sampling.temperature), TopKLogitsWarper(sampling.top_k),
                   TopPLogitsWarper(sampling.top_p)):
        scores = warper(None, scores)
    return scores[0].softmax(-1)


@pytest.fixture(params=["torch", "compiled"])
def sampler(request, monkeypatch):
    """Which sampler ``fastpath.sample_rows`` runs: its torch ops, or the compiled module's."""
    if request.param == "compiled":
        assert native.module(wait=600) is not None, f"the compiled step did not build: {native.error()!r}"
    else:
        monkeypatch.setattr(native, "loaded", lambda: None)
    return request.param


@pytest.mark.parametrize("top_k,top_p", [(50, 0.9), (5, 1.0), (0, 0.5)])
def test_sampling_draws_from_the_same_distribution_as_transformers(top_k, top_p, sampler):
    torch.manual_seed(0)
    logits = torch.randn(1000) * 3
    sampling = Sampling(temperature=0.7, top_k=top_k, top_p=top_p, repetition_penalty=1.0)
    expected = reference_distribution(logits, Sampling(temperature=0.7, top_k=top_k or 1000, top_p=top_p))
    generator = torch.Generator().manual_seed(1)
    draws = torch.tensor([fastpath.sample_next(logits.clone(), sampling, [], generator) for _ in range(4000)])
    observed = torch.bincount(draws, minlength=1000).float() / len(draws)
    assert set(draws.tolist()) <= set(torch.nonzero(expected).flatten().tolist())  # never outside the nucleus
    assert (observed - expected).abs().sum() < 0.12  # total variation, 4000 draws


def test_rows_sampled_together_keep_their_own_settings_and_seeds(sampler):
    """``sample_rows`` draws each row of a batch from its own distribution (settings differ by row:
    greedy with a repetition penalty, top-k, top-p alone), as transformers' processors give it, and a
    seeded row draws the same tokens whatever rows come beside it."""
    torch.manual_seed(0)
    logits = torch.randn(3, 1000) * 3
    samplings = [Sampling(temperature=0, repetition_penalty=1.3), Sampling(temperature=0.7, top_k=5, top_p=1.0),
                 Sampling(temperature=1.2, top_k=0, top_p=0.5, repetition_penalty=1.0)]
    seen = [torch.tensor([int(logits[0].argmax())]), None, None]  # the penalty moves row 0 off its argmax
    draws = [[], [], []]
    generators = [None, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    for _ in range(3000):
        for row, token in enumerate(fastpath.sample_rows(logits.clone(), samplings, seen, generators)):
            draws[row].append(token)
    penalized = logits[0].clone()
    penalized[seen[0]] = torch.where(penalized[seen[0]] < 0, penalized[seen[0]] * 1.3, penalized[seen[0]] / 1.3)
    assert set(draws[0]) == {int(penalized.argmax())} and draws[0][0] != int(logits[0].argmax())
    for row in (1, 2):
        sampling = samplings[row]
        expected = reference_distribution(logits[row], replace(sampling, top_k=sampling.top_k or 1000))
        observed = torch.bincount(torch.tensor(draws[row]), minlength=1000).float() / len(draws[row])
        assert set(draws[row]) <= set(torch.nonzero(expected).flatten().tolist())  # never outside top-k/top-p
        assert (observed - expected).abs().sum() < 0.12, row  # total variation, 3000 draws
    mine, theirs = torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)
    alone = [fastpath.sample_rows(logits[1:2].clone(), samplings[1:2], [None], [mine])[0] for _ in range(20)]
    mine.manual_seed(7)
    beside = [fastpath.sample_rows(logits.clone(), samplings, seen, [None, mine, theirs])[1] for _ in range(20)]
    assert alone == beside and len(set(alone)) > 1


def test_compiled_sampler_draws_the_tokens_the_torch_ops_draw():
    """The compiled ``sample_rows`` is the torch ops' maths: for the same logits, settings and uniform
    numbers it picks the same token (greedy, top-k, top-p, no top-k, with and without a penalty and a
    favour bias), and changes the logits in place the same way. At the bundled model's vocabulary
    too (49k: the heap's 16-at-a-time scan). Not every draw: sums and exponentials round differently
    from torch's vectorized ones, which can move the top-p cut by a token where tokens of 1e-4 each
    straddle it (measured on Zen 4: 4 of 800 draws, all in the row with no top-k over 49k tokens)."""
    assert native.module(wait=600) is not None, f"the compiled step did not build: {native.error()!r}"
    settings = [Sampling(temperature=0.9, top_p=0.95, top_k=50, repetition_penalty=1.15),
                Sampling(temperature=0, repetition_penalty=1.3),
                Sampling(temperature=1.2, top_k=0, top_p=0.5, repetition_penalty=1.0),
                Sampling(temperature=0.7, top_k=5, top_p=1.0, repetition_penalty=0.8)]
    torch.manual_seed(0)
    drawn, differ = set(), 0
    for trial in range(200):
        vocab = 1000 if trial % 2 else 49152
        logits = torch.randn(4, vocab) * 3
        seen = [torch.randint(0, vocab, (40,)).unique() for _ in range(3)] + [None]
        results = []
        for compiled in (False, True):
            changed = logits.clone()
            generators = [torch.Generator().manual_seed(trial * 4 + row) for row in range(4)]
            favour = [tuple(range(trial % 7, vocab, vocab // 5)), None, None, (int(logits[3].argmin()),)]
            results.append((fastpath.sample_rows(changed, settings, seen, generators, favour=favour,
                                                 bias=[4.0, 0.0, 0.0, 1000.0], native_sampler=compiled), changed))
        (want, want_logits), (got, got_logits) = results
        differ += sum(a != b for a, b in zip(got, want))
        assert got[1] == want[1] and got[3] == want[3] == int(logits[3].argmin()), trial  # greedy, and a favoured id
        assert torch.equal(got_logits, want_logits)
        drawn.add(tuple(got))
    assert differ <= 8  # of 800 draws
    assert len(drawn) > 150  # the draws vary (no row stuck on one token)


def test_closed_engine_ends_streams_refuses_work_and_is_rebuilt(tiny_causal):
    lm = load_model(ModelSpec(tiny_causal, dtype="float32"))
    engine = fastpath.Engine(fastpath.FastModel(lm.model, weights="none", slots=2), stop_ids=[])  # never ends alone
    lm.fast_engine = engine
    request = engine.submit([1, 2, 3], Sampling(temperature=0, max_new_tokens=8000, repetition_penalty=1.0))
    next(request.tokens())  # it is decoding
    engine.close()
    assert not engine.worker.is_alive()
    assert len(list(request.tokens())) < 8000  # its stream ended
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit([1, 2, 3], Sampling())
    rebuilt = fastpath.engine_for(lm)
    assert rebuilt is not engine and generation.generate(lm, convo_of("Hi"), Sampling(max_new_tokens=4))


def test_the_engines_batch_is_32_rows_on_amx_cpus_else_8_and_the_synthetic_default_follows(tiny_causal, monkeypatch):
    """On AMX tiles a 32-row step costs about 2.5x an 8-row one, so the engine takes 32 rows there (8
    elsewhere), and a synthetic run makes that many conversations at once; $CONVO_MAX_BATCH sets both,
    and a value that is no whole number from 1 to 512 is refused by name."""
    from convo.engine import hardware
    from convo.synth import SynthSampling

    monkeypatch.delenv("CONVO_MAX_BATCH", raising=False)
    monkeypatch.delenv("CONVO_FAST_AMX", raising=False)
    for flags, rows in (("flags\t: fpu avx2 avx512_bf16 amx_bf16 amx_tile", 32), ("flags\t: fpu avx2 avx512_bf16", 8)):
        monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
        assert hardware.default_batch() == rows
        assert SynthSampling().batch_size == rows
    monkeypatch.setattr(hardware, "cpu_flags", lambda: "flags\t: amx_tile")
    monkeypatch.setenv("CONVO_FAST_AMX", "0")  # tiles turned off: 32 rows would cost 4x 8
    assert hardware.default_batch() == 8
    monkeypatch.setenv("CONVO_MAX_BATCH", "3")
    assert hardware.default_batch() == SynthSampling().batch_size == 3
    lm = load_model(ModelSpec(tiny_causal, dtype="float32"))
    try:
        assert fastpath.engine_for(lm).fast.slots == 3
    finally:
        lm.fast_engine.close()
    for bad in ("0", "eight", "600"):
        monkeypatch.setenv("CONVO_MAX_BATCH", bad)
        with pytest.raises(ValueError, match=f"CONVO_MAX_BATCH: expected a whole number from 1 to 512, got '{bad}'"):
            hardware.default_batch()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's /proc")
def test_the_kv_cache_is_committed_as_written_a_small_page_at_a_time():
    """The KV cache's memory comes as it is written. numpy's zeros asked for huge pages on large
    arrays, so each first write committed 2 MB: 8 chats of 300 tokens held 364 MB of cache for the 55
    MB they wrote. Here one position in each of 256 slot-heads (256 KB apart) commits about 1 MB."""
    cache = fastpath.lazy_zeros((256, 2048, 64), torch.bfloat16)  # 64 MB
    before = resident_mb()
    cache[:, 0, 0] = 1.0
    grown = resident_mb() - before
    assert grown < 8, f"{grown:.1f} MB committed for 256 small writes"
    assert cache.sum().item() == 256 and cache.is_contiguous()


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's /proc")
def test_building_the_engine_gives_back_the_memory_its_packing_freed(tmp_path):
    """The bundled model's fast path is built from temporaries that glibc kept in its heap once
    freed: the process held about 127 MB more than it used, for as long as it ran. (In a process of
    its own: what this one's earlier tests freed would count too.)"""
    import subprocess
    import sys

    script = f"""
import ctypes
from convo.engine import get_model
from convo.engine.fastpath import engine_for
rss = lambda: {RSS}
engine_for(get_model("bundled"))
before = rss()
ctypes.CDLL("libc.so.6").malloc_trim(0)
print(before - rss())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    left = float(done.stdout.split()[-1])
    assert left < 16, f"{left:.0f} MB freed but still held after the build"


def greedy(budget: int) -> Sampling:
    return Sampling(temperature=0, max_new_tokens=budget, repetition_penalty=1.0)


def texts_alone(fast, prompts, budgets) -> list[list[int]]:
    """Each prompt's greedy tokens, one request at a time on an engine of its own."""
    engine = fastpath.Engine(fast, stop_ids=[])
    try:
        return [list(engine.submit(p, greedy(b)).tokens()) for p, b in zip(prompts, budgets)]
    finally:
        engine.close()


def test_a_request_that_ends_frees_its_slot_for_the_last_one_only(tiny_causal, monkeypatch):
    """When requests end, each freed slot takes the last live request (one cache copy a freed slot;
    moving every later request down one slot copied 3 caches here, 658 in a synthetic run), and
    every request still gets the text it gets alone."""
    lm = load_model(ModelSpec(tiny_causal, dtype="float32"))
    fast = fastpath.FastModel(lm.model, weights="none", slots=4, max_len=256)
    prompts = [lm.tokenizer(p).input_ids for p in PROMPTS]
    budgets = [3, 20, 5, 20]  # the first and the third end early, the third after the first
    alone = texts_alone(fast, prompts, budgets)
    engine = fastpath.Engine(fast, stop_ids=[])
    gate, admit = threading.Event(), engine._admit
    monkeypatch.setattr(engine, "_admit", lambda: gate.wait(30) and admit())  # all four in one admission
    moves = []
    original = fast.move_slot
    monkeypatch.setattr(fast, "move_slot", lambda *args: moves.append(args[:2]) or original(*args))
    try:
        requests = [engine.submit(p, greedy(b)) for p, b in zip(prompts, budgets)]
        gate.set()
        together = [list(r.tokens()) for r in requests]
    finally:
        engine.close()
    assert [len(t) for t in together] == budgets
    assert together == alone
    assert moves == [(3, 0)]  # the first's slot takes the last; the third is then last and leaves no hole


def test_with_the_compiled_step_requests_keep_their_slots(tiny_causal, monkeypatch):
    """The compiled step reads each row's own slot, so a request that ends frees its slot and no
    other moves (no cache copies); the next request takes the lowest free slot, and every request
    gets the text it gets alone."""
    assert native.module(wait=600) is not None, f"the compiled step did not build: {native.error()!r}"
    lm = load_model(ModelSpec(tiny_causal, dtype="bfloat16"))
    fast = fastpath.FastModel(lm.model, weights="int4", slots=4, max_len=256, dense_rows=None)
    assert fast.can_mix(fast.slots)
    prompts = [lm.tokenizer(p).input_ids for p in PROMPTS]
    prompts.append(prompts[0][::-1])
    budgets = [3, 20, 5, 20, 6]  # the first and the third end early; the fifth comes after the first
    alone = texts_alone(fast, prompts, budgets)
    engine = fastpath.Engine(fast, stop_ids=[])
    engine.prefixes = fastpath.PrefixCache(budget_bytes=0)  # (no cached prompts: each is prefilled as alone)
    gate, admit = threading.Event(), engine._admit
    monkeypatch.setattr(engine, "_admit", lambda: gate.wait(30) and admit())  # the first four in one admission
    moves, steps = [], []
    monkeypatch.setattr(fast, "move_slot", lambda *args: moves.append(args))
    decode = fast.decode
    monkeypatch.setattr(fast, "decode", lambda tokens, lengths, slots=None, pick=None:
                        steps.append(slots) or decode(tokens, lengths, slots, pick))
    try:
        requests = [engine.submit(p, greedy(b)) for p, b in zip(prompts[:4], budgets)]
        gate.set()
        first = list(requests[0].tokens())
        requests.append(engine.submit(prompts[4], greedy(budgets[4])))
        together = [first] + [list(r.tokens()) for r in requests[1:]]
    finally:
        engine.close()
    assert moves == []
    assert [r.slot for r in requests] == [0, 1, 2, 3, 0]  # the fifth in the first's slot
    # the others stayed in their slots once the first ended, whether the fifth joined at the next step
    # ([1, 2, 3, 0]: it was submitted before the engine stepped again, a CI run saw that) or later ([1, 2, 3])
    assert any(list(slots or [])[:3] == [1, 2, 3] for slots in steps), steps
    assert together == alone


def test_evicted_model_engine_finishes_its_requests_then_stops(tiny_causal):
    from convo.engine import ModelPool

    pool = ModelPool()
    lm = pool.get(ModelSpec(tiny_causal, dtype="float32"))
    engine = fastpath.Engine(fastpath.FastModel(lm.model, weights="none", slots=2), stop_ids=[])
    lm.fast_engine = engine
    request = engine.submit([1, 2, 3], Sampling(temperature=0, max_new_tokens=40, repetition_penalty=1.0))
    pool.clear()  # what eviction does: the engine drains
    assert len(list(request.tokens())) == 40
    engine.worker.join(10)
    assert not engine.worker.is_alive()


def test_cli_exits_cleanly_with_the_engine_busy(tiny_causal, tmp_path):
    """Interpreter exit while the engine thread is inside a torch op used to abort the process
    ("terminate called without an active exception"); engines are now closed at exit."""
    import subprocess
    import sys

    script = ("from convo.engine import get_model\nfrom convo.settings import ModelSpec, Sampling\n"
              "from convo.engine import fastpath\n"
              f"lm = get_model(ModelSpec({tiny_causal!r}, dtype='float32'))\n"
              "engine = fastpath.engine_for(lm)\n"
              "requests = [engine.submit(list(range(1, 200)), Sampling(max_new_tokens=5000)) for _ in range(4)]\n"
              "next(requests[0].tokens())\nprint('leaving')\n")
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                                cwd=os.path.dirname(os.path.dirname(__file__)))
        assert result.returncode == 0 and "leaving" in result.stdout, result.stderr[-2000:]
        assert "terminate called" not in result.stderr


@contextlib.contextmanager
def recording_prefills(fast):
    """The segments of every ``fast.prefill_many`` call made inside, one list a call."""
    calls, original = [], fast.prefill_many
    fast.prefill_many = lambda segments, picks=None: calls.append(segments) or original(segments, picks)
    try:
        yield calls
    finally:
        del fast.prefill_many  # the class's method again


def packed_kernels():
    """The compiled module when it has the packed matmuls (this CPU has AVX512-BF16 or AVX2), else skip."""

    module = native.module(wait=600)
    assert module is not None, f"the compiled step did not build: {native.error()!r}"
    if not module.packed_kernels:
        pytest.skip("this CPU has neither AVX512-BF16 nor AVX2: the packed matmuls are not built")
    return module


@pytest.mark.parametrize("kernels", ["torch", "packed", "dense"])
def test_compiled_decode_step_matches_the_eager_step(tiny_causal, monkeypatch, kernels):
    """The compiled step (engine/decode_step.cpp, built by engine.native) gives the eager step's
    logits and KV cache, up to bf16 rounding, for rows at different lengths, with torch's int4 kernel,
    with the packed one (AVX512-BF16 or AVX2) and with the dense bf16 copies (AMX CPUs' steps of many
    rows: they ran op by op before, a 16-row step of the bundled model 41 ms, 23 compiled); with
    CONVO_FAST_NATIVE=0 the eager step runs."""

    module = packed_kernels() if kernels == "packed" else native.module(wait=600) if kernels == "dense" else None
    model = load_model(ModelSpec(tiny_causal, dtype="float32")).model
    with torch.no_grad():  # sharper attention than random init gives, so a wrong score scale or mask shows
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8)
            layer.self_attn.k_proj.weight.mul_(8)
    fast = fastpath.FastModel(model, weights="int4", slots=4, max_len=128, dtype=torch.bfloat16,
                              dense_rows=(2, 2) if kernels == "dense" else None, kernels=module)
    assert fast.native_supported()
    assert native.module(wait=600) is not None, f"the compiled step did not build: {native.error()!r}"
    assert (fast.layers[0].qkv.packed is not None) == (kernels == "packed" or bool(module and module.packed_kernels))
    assert (fast.native_args(4) is fast.native_dense is not None) == (kernels == "dense")
    prompts = [list(range(5, 5 + n)) for n in (3, 9, 17, 40)]
    with torch.inference_mode():
        fast.prefill_many([(slot, ids, 0) for slot, ids in enumerate(prompts)])
        before = fast.k_cache.clone(), fast.v_cache.clone()
        lengths, tokens = [len(p) for p in prompts], [7, 8, 9, 10]
        eager = fast.decode_eager(tokens, lengths)
        eager_cache = fast.k_cache.clone(), fast.v_cache.clone()
        fast.k_cache.copy_(before[0])
        fast.v_cache.copy_(before[1])
        compiled = fast.decode(tokens, lengths)
    scale = eager.abs().max()
    assert (compiled - eager).abs().max() < 0.01 * scale  # (measured: 0.0 here; a wrong score scale: 0.41)
    # the eager step's choice is (within rounding) the compiled step's best too
    chosen = compiled.gather(1, eager.argmax(-1, keepdim=True))[:, 0]
    assert (chosen >= compiled.max(-1).values - 0.01 * scale).all()
    for got, want, old in zip((fast.k_cache, fast.v_cache), eager_cache, before):
        assert (got.float() - want.float()).abs().max() < 0.05 * want.float().abs().max()
        assert not torch.equal(got, old)  # the new token's keys and values were written
    monkeypatch.setenv("CONVO_FAST_NATIVE", "0")
    off = fastpath.FastModel(model, weights="int4", slots=4, max_len=128, dtype=torch.bfloat16, dense_rows=None)
    assert not off.native_supported()
    with torch.inference_mode():
        off.prefill(0, prompts[0])
        before = off.k_cache.clone(), off.v_cache.clone()
        first = off.decode([7], [3])
        off.k_cache.copy_(before[0])
        off.v_cache.copy_(before[1])
        assert torch.equal(first, off.decode_eager([7], [3]))


def grouped_model(heads: int, kv_heads: int, head_dim: int):
    """A random 2-layer Llama with ``heads`` query heads on ``kv_heads`` KV heads of ``head_dim``, its
    attention sharpened so that a head reading another head's scores or values shows."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=head_dim * heads, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=128)
    model = LlamaForCausalLM(config).eval()
    sharpen = 8 if head_dim == 16 else 2  # (the same scores' spread for heads of 4x the width or more)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(sharpen)
            layer.self_attn.k_proj.weight.mul_(sharpen)
    return model


@pytest.mark.parametrize("paired", [False, True], ids=["rows", "paired"])
@pytest.mark.parametrize("head_dim", [16, 64, 128])
@pytest.mark.parametrize("heads,kv_heads", [(6, 1), (12, 4)])
@pytest.mark.parametrize("rows", [1, 8])
def test_compiled_attention_matches_the_eager_step_for_grouped_heads(heads, kv_heads, rows, head_dim, paired):
    """The compiled step's attention takes the query heads of one KV head together (up to 4 a job,
    so 6 heads on one KV head are a job of 4 and one of 2), or one head a job when the rows are few:
    each way gives the eager step's logits, with rows at different lengths in their own slots (with
    64-dim heads: the vectorized loops, and on AMX CPUs the scores of whole blocks of 16 keys on
    tiles, then the rest), with the values kept as rows or in key pairs (``paired_values``: on AMX
    CPUs the tiles sum every key's values, the last block's probabilities past a row's length zeros,
    128-dim heads in two passes of 64 dims; with 16-dim heads the loop without tiles reads the pairs)."""

    assert native.module(wait=600) is not None, f"the compiled step did not build: {native.error()!r}"
    fast = fastpath.FastModel(grouped_model(heads, kv_heads, head_dim), weights="int4", slots=8, max_len=128,
                              dtype=torch.bfloat16, dense_rows=None, paired_values=paired)
    assert fast.native_supported() and fast.v_cache.dim() == (6 if paired else 5)
    prompts = [[(7 * i + 3 * j) % 60 + 2 for j in range(5 + 9 * i + (head_dim > 16) * 30)] for i in range(rows)]
    with torch.inference_mode():
        fast.prefill_many([(slot, ids, 0) for slot, ids in enumerate(prompts)])
        before = fast.k_cache.clone(), fast.v_cache.clone()
        tokens, lengths = [11 + i for i in range(rows)], [len(p) for p in prompts]
        eager = fast.decode_eager(tokens, lengths)
        fast.k_cache.copy_(before[0])
        fast.v_cache.copy_(before[1])
        compiled = fast.decode(tokens, lengths)
    scale = eager.abs().max()
    assert (compiled - eager).abs().max() < 0.01 * scale


@pytest.mark.parametrize("amx", [True, False], ids=["amx", "no-amx"])
def test_values_in_key_pairs_are_the_same_cache_as_values_in_rows(amx):
    """A cache whose values are kept in key pairs (``paired_values``, AMX CPUs' default) holds what one
    with rows of values holds: slots read back equal, a slot written from another's copy or moved
    decodes as the original does, and decode steps at odd and even lengths, compiled and op by op (each
    row in its own slot), give the same logits (within the bf16 rounding of the probabilities that the
    tiles take), with the tiles and without them."""
    module = native.module(wait=600)
    assert module is not None, f"the compiled step did not build: {native.error()!r}"
    if module.set_amx(amx) != amx:
        pytest.skip("this CPU has no AMX tiles (or Linux does not lend them)")
    model = grouped_model(12, 4, 64)
    made = {paired: fastpath.FastModel(model, weights="int4", slots=4, max_len=128, dtype=torch.bfloat16,
                                       dense_rows=None, paired_values=paired) for paired in (False, True)}
    prompts = [[(5 * i + 3 * j) % 60 + 2 for j in range(n)] for i, n in enumerate((33, 40, 64))]
    logits = {}
    try:
        with torch.inference_mode():
            for paired, fast in made.items():
                fast.prefill_many([(slot, ids, 0) for slot, ids in enumerate(prompts)])
                keys, values = fast.read_slot(1, 40)
                fast.write_slot(3, keys, values)  # slot 3: a copy of slot 1, then slot 1 moved to slot 2's place
                fast.move_slot(1, 2, 40)
                steps = []
                for step in range(4):  # lengths 33.., 40.., 40.. in slots 0, 2 and 3; the last step op by op
                    lengths = [33 + step, 40 + step, 40 + step]
                    decode = fast.decode if step < 3 else fast.decode_eager
                    steps.append(decode([7 + step, 9 + step, 9 + step], lengths, [0, 2, 3]))
                logits[paired] = torch.stack(steps)
                assert torch.equal(fast.read_slot(2, 44)[1], fast.read_slot(3, 44)[1])
            for slot, length in ((0, 33), (2, 40)):  # the prompts' values (the steps' differ by rounding)
                assert torch.equal(made[True].read_slot(slot, length)[1], made[False].read_slot(slot, length)[1])
    finally:
        module.set_amx(True)
    rows, paired = logits[False], logits[True]
    assert torch.equal(paired[:, 1], paired[:, 2])  # the copied slot decodes as the moved one
    assert (paired - rows).abs().max() < 0.01 * rows.abs().max()


def test_prompt_rows_fed_in_a_decode_step_match_a_prefill_of_their_own(tiny_causal):
    """A step whose rows are other slots' next tokens plus a new prompt's tokens (several rows in
    one slot): the compiled step gives the eager step's logits, the prompt's last row gives what a
    prefill of that prompt gives, and the decode rows what a step without the prompt gives."""

    model = load_model(ModelSpec(tiny_causal, dtype="float32")).model
    with torch.no_grad():  # sharper attention, so a row attending to the wrong slot or positions shows
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8)
            layer.self_attn.k_proj.weight.mul_(8)
    fast = fastpath.FastModel(model, weights="int4", slots=4, max_len=128, dtype=torch.bfloat16, dense_rows=None)
    assert native.module(wait=600) is not None, f"the compiled step did not build: {native.error()!r}"
    assert fast.can_mix(12)
    prompts = [list(range(5, 5 + n)) for n in (3, 9, 17)]
    new = [11, 3, 29, 8, 41, 6, 2, 19, 23]  # slot 3's prompt: the first 3 already cached, 6 to feed
    with torch.inference_mode():
        fast.prefill_many([(slot, ids, 0) for slot, ids in enumerate(prompts)] + [(3, new[:3], 0)])
        before = fast.k_cache.clone(), fast.v_cache.clone()
        tokens = [7, 8] + new[3:] + [9]
        positions = [3, 9, 3, 4, 5, 6, 7, 8, 17]
        slots = [0, 1, 3, 3, 3, 3, 3, 3, 2]
        pick = [0, 1, 7, 8]
        compiled = fast.decode(tokens, positions, slots, pick)
        fast.k_cache.copy_(before[0])
        fast.v_cache.copy_(before[1])
        eager = fast.decode_eager(tokens, positions, slots, pick)
        fast.k_cache.copy_(before[0])
        fast.v_cache.copy_(before[1])
        alone = fast.prefill(3, new, 3)[0]
        plain = fast.decode([7, 8, 9], [3, 9, 17])
    scale = eager.abs().max()
    assert compiled.shape == (4, model.config.vocab_size)
    assert (compiled - eager).abs().max() < 0.01 * scale
    assert (compiled[2] - alone).abs().max() < 0.03 * scale  # (eager prefill ops: bf16 rounding in another order)
    assert (compiled[[0, 1, 3]] - plain).abs().max() < 0.01 * scale
    # the bound tells prompts apart: one token changed in the fed part moves the logits past it
    assert (compiled[2] - fast.prefill(3, new[:5] + [new[5] + 1] + new[6:], 3)[0]).abs().max() > 0.03 * scale


def test_engine_feeds_short_prompts_with_the_decode_step(tiny_causal, monkeypatch):
    """Requests whose prompts are short after the prefix cache join the running decode step instead
    of a prefill forward of their own, and get the text they get that way."""

    assert native.module(wait=600) is not None, f"the compiled step did not build: {native.error()!r}"
    lm = load_model(ModelSpec(tiny_causal, dtype="bfloat16"))
    fast = fastpath.FastModel(lm.model, weights="int4", slots=4, max_len=256, dense_rows=None)
    assert fast.native_supported()
    greedy = Sampling(temperature=0, max_new_tokens=12, repetition_penalty=1.0)
    prompts = [lm.tokenizer(p).input_ids for p in PROMPTS]

    def run(mix: int) -> tuple[list[list[int]], int]:
        monkeypatch.setattr(fastpath, "MIX_TOKENS", mix)
        engine = fastpath.Engine(fast, [])
        with recording_prefills(fast) as prefills:
            try:
                first = engine.submit(prompts[0], greedy)  # running when the others arrive
                next(first.tokens())
                others = [engine.submit(p, greedy) for p in prompts[1:]]
                return [list(r.tokens()) for r in [first] + others], len(prefills)
            finally:
                engine.close()

    separate, prefills = run(0)
    assert prefills >= 2
    mixed, prefills = run(64)
    assert prefills == 0
    # the first request's first token came with it; the rest are the same texts
    assert [tokens[-11:] for tokens in mixed] == [tokens[-11:] for tokens in separate]


@pytest.mark.parametrize("amx", [True, False], ids=["amx", "no-amx"])
@pytest.mark.parametrize("rows", [1, 3, 8, 9, 13, 24, 40, 50, 70])
def test_packed_matmuls_match_torchs_kernels(rows, amx):
    """The packed int4 (per group of 32) and int8 (per output) matmuls of decode_step.cpp give what
    torch's int4/int8 kernels give for the same quantized weights, within bf16 rounding, at row counts
    that use the unrolled blocks of up to 12 rows in passes of equal rows (9 in one, 13 as 7 + 6, 24 as
    12 + 12, 50 as five of 10, 70 as four of 12 and two of 11) and, on AMX CPUs, with tiles of 16 and 32
    rows and output blocks in threes (5 blocks: a last run of two), passes of 20-48 rows whose int4
    weights are dequantized to bf16 (24 rows in two tiles, 40 in three, 70 as 32 + 38, and 50 as 32 and
    then 18 rows scaled per group), and without tiles. (A wrong layout misses by the outputs' whole
    size: pairs of inputs transposed, 0.5-1.4x the largest output; a dequantized group's scales swapped
    between its outputs 0-7 and 8-15, or the rows of a per-group pass left without their sums, fail it
    too.)"""
    module = packed_kernels()
    if module.set_amx(amx) != amx:
        pytest.skip("this CPU has no AMX tiles (or Linux does not lend them)")
    try:
        check_packed_matmuls(module, rows)
    finally:
        module.set_amx(True)


def check_packed_matmuls(module, rows):
    torch.manual_seed(rows)
    x = torch.randn(rows, 96).bfloat16()
    for mode, weight in (("int4", torch.randn(48, 96)), ("int8", torch.randn(80, 96))):
        plain = fastpath.Linear(weight, None, mode, torch.bfloat16)
        packed = fastpath.Linear(weight, None, mode, torch.bfloat16, kernels=module)
        assert packed.packed is not None and plain.packed is None
        want, got = plain(x).float(), packed(x).float()
        exact = x.float() @ weight.t()
        assert (got - want).abs().max() <= 0.02 * want.abs().max(), mode
        # as close to the unquantized product as torch's kernel is
        assert (got - exact).abs().max() <= 1.2 * (want - exact).abs().max() + 0.05, mode


def test_int4_weights_fp16_cannot_scale_use_torchs_kernel():
    """The packed int4 layout keeps each group's scale and low in fp16 (as a GGUF's Q4_1 block): a
    layer whose weights fp16 cannot hold (|w| near 1e6) is not packed and runs torch's int4 kernel,
    with the same products, rather than infinite scales."""
    module = packed_kernels()
    torch.manual_seed(0)
    x = torch.randn(3, 64).bfloat16()
    for magnitude, packs in ((1.0, True), (1e6, False)):
        weight = torch.randn(32, 64) * magnitude
        layer = fastpath.Linear(weight, None, "int4", torch.bfloat16, kernels=module)
        assert (layer.packed is not None) == packs
        got, exact = layer(x).float(), x.float() @ weight.t()
        assert got.isfinite().all()
        assert (got - exact).abs().max() <= 0.15 * exact.abs().max()


def test_a_build_lock_left_by_a_killed_build_does_not_block_the_next():
    """torch's build lock is a plain file: a build killed midway leaves it, and every later build
    waited on it forever (a CI run hung on it). The next build removes it under a lock of its own."""

    assert native.module(wait=600) is not None, native.error()
    leftover = native.cache_dir() / "native" / native.build_key() / "lock"
    leftover.touch()  # as a killed build leaves it
    done = []
    builder = threading.Thread(target=lambda: done.append(native._build()), daemon=True)
    builder.start()
    builder.join(120)
    assert done and done[0].packed_kernels in ("avx512_bf16", "avx2", "") and not leftover.exists()



def test_a_next_turn_starts_in_the_slot_its_last_turn_left(tiny_causal):
    """With the compiled step an ended request's slot is parked as it is: the next turn (a prompt
    that starts with that prompt and its reply) starts in that slot with nothing copied, where the
    slot was copied to the prefix cache and back into a slot (a synthetic run's every line); a request
    that finds no free slot takes the oldest parked one, whose keys and values go to the prefix cache
    then. A request that only shares a start with it (another chat with the same system prompt) does
    not take it while a slot is free. The texts are the same either way."""
    assert native.module(wait=600) is not None, f"the compiled step did not build: {native.error()!r}"
    lm = load_model(ModelSpec(tiny_causal, dtype="bfloat16"))
    fast = fastpath.FastModel(lm.model, weights="int4", slots=2, max_len=256, dense_rows=None)
    assert fast.can_mix(fast.slots)
    first, other = lm.tokenizer(PROMPTS[3]).input_ids, lm.tokenizer(PROMPTS[1]).input_ids
    half = len(first) // 2
    assert half >= fastpath.PrefixCache().min_tokens  # (a start the parked slot shares, as a system prompt)
    copies, originals = [], {name: getattr(fast, name) for name in ("read_slot", "write_slot")}
    for name, original in originals.items():
        setattr(fast, name, lambda *args, _name=name, _original=original: copies.append(_name) or _original(*args))

    def chat(park: bool):
        engine = fastpath.Engine(fast, stop_ids=[])
        engine.park_slots = park
        copies.clear()
        try:
            turn1 = engine.submit(first, greedy(6))
            reply1 = list(turn1.tokens())
            second = first + reply1 + first[1:4]
            turn2 = engine.submit(second, greedy(6))
            reply2 = list(turn2.tokens())
            again = engine.submit(second, greedy(6))  # the same prompt again (a script's line sampled again)
            reply2_again = list(again.tokens())
            between_turns = list(copies)
            running = engine.submit(first[:half] + other, greedy(20))  # shares a start only: a free slot
            next(running.tokens())
            late = engine.submit(other[::-1], greedy(4))  # no free slot now, unless one is parked
            texts = [reply1, reply2, reply2_again, list(late.tokens()), list(running.tokens())]
            kept = engine.prefixes.longest(second + reply2 + [5])
            slots = [turn1.slot, turn2.slot, again.slot, running.slot, late.slot]
            return texts, between_turns, copies[len(between_turns):], slots, kept
        finally:
            engine.close()

    try:
        before, copied, _, _, _ = chat(park=False)
        after, not_copied, later, slots, kept = chat(park=True)
    finally:
        for name, original in originals.items():
            setattr(fast, name, original)
    assert after == before and before[1] == before[2]
    assert copied == ["read_slot", "write_slot"] * 2 + ["read_slot"] and not_copied == []  # (each end, each next start)
    assert slots == [0, 0, 0, 1, 0]  # the second turn (twice) in the first's slot; the last in the parked one
    assert later == ["read_slot"]  # the parked slot, into the prefix cache when the late request took it
    assert kept == len(first) + len(before[0]) + 3 + len(before[1]) - 1  # (its last token was never fed)

SCORED = ["What did the miller grind?", "Why?", "How old is the mill by the river, and who built it there?"]


def test_engine_scores_continuations_as_the_models_own_forward_does(lm, monkeypatch):
    """continuation_logprobs on the engine (fp32 weights: a prefill forward each, its rows picked) gives
    the model's own forward's scores; the prompt is computed once (later continuations hit the cache)."""
    prompt = generation.render_prompt(lm, convo_of(PROMPTS[3]))
    monkeypatch.setenv("CONVO_FAST", "0")
    expected = generation.continuation_logprobs(lm, prompt, SCORED)
    monkeypatch.setenv("CONVO_FAST", "1")
    engine = fastpath.engine_for(lm)
    engine.forget()
    fast, prefills = engine.fast, []
    original = fast.prefill_many
    monkeypatch.setattr(fast, "prefill_many",
                        lambda segments, picks=None: prefills.append([len(ids) - start for _, ids, start in segments])
                        or original(segments, picks))
    got = generation.continuation_logprobs(lm, prompt, SCORED)
    assert got == pytest.approx(expected, abs=1e-4)
    cont = [len(lm.tokenizer(text, add_special_tokens=False).input_ids) for text in SCORED]
    prompt_len = len(lm.tokenizer(prompt, add_special_tokens=False).input_ids)
    # the first runs its prompt (less the cached start) and itself; the others their last prompt token and theirs
    assert prefills[0][0] > cont[0] + 1 and [n for batch in prefills[1:] for n in batch] == [n + 1 for n in cont[1:]]
    assert prefills[0][0] <= prompt_len + cont[0]
    # the scores are of the continuations' own tokens: one token changed moves its score
    assert generation.continuation_logprobs(lm, prompt, ["What did the miller eat?"])[0] != pytest.approx(got[0], abs=1e-3)
    # and nothing is left behind: the slots are free again
    assert not engine.active


def test_scoring_rows_fed_in_a_decode_step_match_a_prefill_of_their_own(tiny_causal, monkeypatch):
    """With the compiled step, continuations join a decode step (with a running request) instead of a
    prefill of their own, and score what they score that way."""
    assert native.module(wait=600) is not None, f"the compiled step did not build: {native.error()!r}"
    lm = load_model(ModelSpec(tiny_causal, dtype="bfloat16"))
    fast = fastpath.FastModel(lm.model, weights="int4", slots=4, max_len=256, dense_rows=None)
    prompt = lm.tokenizer(PROMPTS[3]).input_ids
    conts = [lm.tokenizer(text, add_special_tokens=False).input_ids for text in SCORED]
    greedy = Sampling(temperature=0, max_new_tokens=40, repetition_penalty=1.0)

    def run(mix: int) -> tuple[list[float], int, list[int]]:
        monkeypatch.setattr(fastpath, "MIX_TOKENS", mix)
        engine = fastpath.Engine(fast, [])
        with recording_prefills(fast) as prefills:
            try:
                running = engine.submit(lm.tokenizer(PROMPTS[1]).input_ids, greedy)  # decoding alongside
                next(running.tokens())
                scores = [list(engine.score(prompt, conts[0]).tokens())[0]]
                scores += [list(r.tokens())[0] for r in [engine.score(prompt, c) for c in conts[1:]]]
                return scores, sum(len(segments) for segments in prefills), list(running.tokens())
            finally:
                engine.close()

    alone, prefills, text_alone = run(0)
    assert prefills == len(SCORED) + 1  # prompts prefilled (the running request's too)
    mixed, prefills, text_mixed = run(64)
    assert prefills == 0
    assert mixed == pytest.approx(alone, abs=0.05)
    assert text_mixed == text_alone  # the running request's rows are untouched by the scoring rows


def test_with_dense_copies_a_decode_step_takes_more_prompt_rows(tiny_causal, monkeypatch):
    """Where the layers keep dense bf16 copies (AMX CPUs: steps of many rows cost little more), a
    decode step takes up to MIX_ROWS_DENSE rows of prompts, MIX_ROWS elsewhere: of three prompts of
    40 new tokens sent together, the third is prefilled on its own with the packed kernels alone
    (80 + 40 > 96 rows) and joins the step with the copies."""
    assert native.module(wait=600) is not None, f"the compiled step did not build: {native.error()!r}"
    lm = load_model(ModelSpec(tiny_causal, dtype="bfloat16"))
    monkeypatch.setattr(fastpath, "MIX_TOKENS", 64)
    monkeypatch.setattr(fastpath, "GATHER_QUIET_S", 0.05)
    prompts = [(lm.tokenizer(text).input_ids * 20)[:40] for text in PROMPTS[:3]]
    prefilled = {}
    for dense in (None, (2, 2)):
        fast = fastpath.FastModel(lm.model, weights="int4", slots=4, max_len=256, dense_rows=dense)
        assert (fast.native_dense is not None) == (dense is not None)
        engine = fastpath.Engine(fast, [])
        with recording_prefills(fast) as prefills:
            try:
                requests = [engine.submit(ids, Sampling(max_new_tokens=3, seed=0)) for ids in prompts]
                assert all(len(list(request.tokens())) == 3 for request in requests)
            finally:
                engine.close()
        prefilled[dense is not None] = [len(segments) for segments in prefills]
    assert prefilled == {False: [1], True: []}


def test_an_idle_engine_starts_requests_sent_together_together(lm, monkeypatch):
    """An idle engine handed a request waits while more keep coming (each within GATHER_QUIET_S of
    the last) and admits them together: one prefill for three prompts sent 2 ms apart, where it ran
    the first alone and the others after it. (The window is widened here so a slow host cannot
    split it.)"""
    monkeypatch.setattr(fastpath, "GATHER_QUIET_S", 0.05, raising=False)
    monkeypatch.setattr(fastpath, "GATHER_MOST_S", 0.5, raising=False)
    fast = fastpath.FastModel(lm.model, weights="none", slots=4, max_len=128)
    engine = fastpath.Engine(fast, [])
    with recording_prefills(fast) as prefills:
        try:
            requests = []
            for text in PROMPTS[:3]:
                requests.append(engine.submit(lm.tokenizer(text).input_ids, Sampling(max_new_tokens=2, seed=0)))
                time.sleep(0.002)
            for request in requests:
                assert len(list(request.tokens())) == 2
        finally:
            engine.close()
    assert [len(segments) for segments in prefills] == [3]


def test_an_idle_engine_waits_for_requests_announced_and_not_yet_submitted(lm, monkeypatch):
    """A chat handler announces its request on starting (``Engine.arriving``): an idle engine handed
    one request waits for the announced ones (ARRIVING_MOST_S at most) and admits them together, one
    prefill for three prompts where the quiet window alone (1 ms) ran the first by itself. An
    announcement withdrawn without a request holds nothing back, nor does one older than
    ARRIVING_MOST_S (its handler left hanging)."""
    monkeypatch.setattr(fastpath, "ARRIVING_MOST_S", 5.0, raising=False)
    fast = fastpath.FastModel(lm.model, weights="none", slots=4, max_len=128)
    engine = fastpath.Engine(fast, [])
    ids = [lm.tokenizer(text).input_ids for text in PROMPTS[:3]]
    requests, announced = [], threading.Barrier(3, timeout=30)

    def handler(prompt):
        with engine.arriving():
            announced.wait()
            time.sleep(0.05)  # the handler's own work before it submits (Gradio, the chat's saving)
            requests.append(engine.submit(prompt, Sampling(max_new_tokens=2, seed=0)))

    with recording_prefills(fast) as prefills:
        try:
            threads = [threading.Thread(target=handler, args=(prompt,)) for prompt in ids[1:]]
            for thread in threads:
                thread.start()
            announced.wait()
            first = engine.submit(ids[0], Sampling(max_new_tokens=2, seed=0))
            for thread in threads:
                thread.join()
            for request in [first, *requests]:
                assert len(list(request.tokens())) == 2
            with engine.arriving():  # withdrawn, never submitted
                pass
            time.sleep(0.1)  # the engine idles again (else it admits without waiting at all)
            started = time.monotonic()
            assert len(list(engine.submit(ids[0], Sampling(max_new_tokens=2, seed=0)).tokens())) == 2
            assert time.monotonic() - started < 2.0
            engine.announced[-1] = time.monotonic() - 5.0  # stale: its thread never came (a handler left hanging)
            time.sleep(0.1)
            started = time.monotonic()
            assert len(list(engine.submit(ids[0], Sampling(max_new_tokens=2, seed=0)).tokens())) == 2
            assert time.monotonic() - started < 2.0
        finally:
            engine.close()
    assert [len(segments) for segments in prefills][0] == 3


def test_replies_no_prompt_continues_are_not_kept_in_the_prefix_cache(lm):
    """Candidates (follow-up questions, the Questions tab's) are never continued: only their prompt
    stays in the prefix cache, not one copy of it per candidate with its reply; a chat's replies are."""
    engine = fastpath.engine_for(lm)
    engine.forget()
    sampling = Sampling(temperature=1.0, max_new_tokens=8, seed=0)
    prompt = generation._prompt_ids(lm, generation.render_prompt(lm, convo_of(PROMPTS[3])))
    generation.generate_batch(lm, [convo_of(PROMPTS[3])] * 6, sampling, keep_replies=False)
    assert len(engine.prefixes.entries) <= 1 and all(len(key) <= len(prompt) for key, _, _ in engine.prefixes.entries)
    assert not engine.parked
    replies = generation.generate_batch(lm, [convo_of(PROMPTS[3])] * 6, sampling)
    kept = [key for key, _, _ in engine.prefixes.entries] + [tuple(held.tolist()) for held, _ in engine.parked.values()]
    longer = {key for key in kept if len(key) > len(prompt)}
    assert len(longer) == len(set(replies)) > 1  # each reply kept, for its conversation's next turn
