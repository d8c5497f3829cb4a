"""Synthetic conversations per minute against the method convo replaces: the chat-builder scripts'
one llama.cpp completion per word, kept raw, on a keyword config of that shape (8 everyday words, a
two-line prompt with {word} ending in a speaker label, a 5-entry exclude list, 4 conversations a word).

    python benchmarks/synth_vs_chat_builder.py [--per-word 4] [--batch-size N] [--tokens 160] [--repeats 3]

Both run the bundled model: the chat-builder way through llama.cpp on its GGUF (in a process of its
own, when ``llama_cpp`` is importable), convo through ``convo.synth.run`` (batched, filtered, retried).
Printed: kept conversations per minute each way and their ratio (the issue's target: convo at least
3x), how many of the raw completions would pass convo's filters, and convo's drops per reason. The two
take turns ``--repeats`` times and the ratio is of the medians: on 2 shared cores one convo run of
identical code took 7.0 s and the next 9.0 s (Zen 4), 3.49x against 2.85x.
"""
from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import machine
from decode import llama_cpp_child, llama_cpp_in_own_process, load_llama

WORDS = ["coffee", "umbrella", "garden", "bicycle", "kitchen", "library", "rain", "breakfast"]
PROMPT_LINES = ['A friendly conversation between a USER and an ASSISTANT about "{word}".', "USER:"]
EXCLUDE = ["as an ai", "language model", "I'm sorry", "I cannot", "http"]
ROLES = ("USER", "ASSISTANT")
# the sampling of convo's synthetic runs (convo.synth.default_sampling), given to llama.cpp as well
TEMPERATURE, TOP_P, TOP_K, REPEAT_PENALTY = 0.7, 0.95, 50, 1.15


def config():
    from convo import synth

    return synth.KeywordConfig("chat-builder", PROMPT_LINES, WORDS, EXCLUDE)


def chat_builder_runs(prompts: list[str], tokens: int, threads: int, n_batch: int | None) -> tuple[list[str], float] | None:
    """The chat-builder method in this process: one raw completion per prompt, one after another.
    (texts, seconds), or None when llama_cpp is not importable."""
    llm = load_llama(threads, n_batch)
    if llm is None:
        return None
    llm.create_completion(prompts[0], max_tokens=4, temperature=0.0)  # warm-up, as convo gets
    started = time.perf_counter()
    texts = [llm.create_completion(prompt, max_tokens=tokens, temperature=TEMPERATURE, top_p=TOP_P, top_k=TOP_K,
                                   repeat_penalty=REPEAT_PENALTY, seed=index)["choices"][0]["text"]
             for index, prompt in enumerate(prompts)]
    return texts, time.perf_counter() - started


def chat_builder_in_own_process(prompts: list[str], tokens: int, threads: int):
    """The method in a child process (see decode.py: next to torch's threads llama.cpp runs slower),
    again with n_batch=1 after a crash. (texts, seconds, setting), or None when llama_cpp is missing."""
    child = functools.partial(llama_cpp_child, script=__file__, flag="--chat-builder-only", timeout=3600)
    result, setting = llama_cpp_in_own_process(tokens, prompts, threads, child=child)
    return None if result is None else (result[0], result[1], setting)


def convo_run(per_word: int, batch_size: int, tokens: int | None, strategy: str, line_candidates: int = 1):
    """convo's keyword run of the same config: (progress, seconds, words written, job, sampling)."""
    from convo import synth
    from convo.engine import get_model

    lm = get_model("bundled")
    job = synth.KeywordJob(config(), roles=ROLES, n_per_word=per_word, strategy=strategy,
                           line_candidates=line_candidates)
    sampling = synth.default_sampling(job, tokens, seed=0)
    list(synth.preview(lm, job, 1, sampling, batch_size=1))  # warm-up: the engine is built, as llama.cpp's load
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.jsonl"
        started = time.perf_counter()
        for progress in synth.run(lm, job, out, sampling=sampling, batch_size=batch_size):
            pass
        seconds = time.perf_counter() - started
        records = synth.read_records(out)
    written = sum(len(m["content"].split()) for r in records for m in r["messages"])
    return progress, seconds, written, job, sampling


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-word", type=int, default=4, help="conversations per word (8 words)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="convo: conversations generated together (default: a synthetic run's, 32 on CPUs with "
                             "AMX tiles, else 8; more than $CONVO_MAX_BATCH wait for a slot)")
    parser.add_argument("--tokens", type=int, default=160, help="llama.cpp: tokens per completion (a whole script)")
    parser.add_argument("--strategy", choices=("turns", "script"), default="turns",
                        help="convo: one line per batched step (the default) or one generation per conversation")
    parser.add_argument("--line-candidates", type=int, default=1,
                        help="convo, turns: lines sampled per step until one names the word")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each method, taking turns (the ratio is of their medians)")
    parser.add_argument("--chat-builder-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--n-batch", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import os

    threads = args.threads or os.cpu_count()
    if args.chat_builder_only:
        print(json.dumps(chat_builder_runs(json.loads(sys.stdin.read()), args.tokens, threads, args.n_batch)))
        return 0
    import torch

    torch.set_num_threads(threads)
    print(machine())
    from convo import synth

    args.batch_size = args.batch_size or synth.SynthSampling().batch_size

    cfg = config()
    prompts = [cfg.prompt(word) for _ in range(args.per_word) for word in WORDS]
    print(f"config: {len(WORDS)} words x {args.per_word}, prompt {PROMPT_LINES!r}, exclude {EXCLUDE!r}")
    convo_rates, ref_rates, result = [], [], {}
    for run in range(1, args.repeats + 1):
        label = f"run {run} of {args.repeats}: " if args.repeats > 1 else ""
        # llama.cpp first, while no torch thread holds an OpenMP team in this process
        reference = chat_builder_in_own_process(prompts, args.tokens, threads)
        progress, seconds, written, job, sampling = convo_run(args.per_word, args.batch_size, None, args.strategy,
                                                            args.line_candidates)
        convo_rates.append(60 * progress.kept / seconds)
        attempts = progress.kept + progress.dropped
        print(f"{label}convo ({args.strategy}, batch {args.batch_size}, {sampling.max_new_tokens} tokens a step, "
              f"{job.line_candidates} line candidates): kept {progress.kept} "
              f"of {attempts} attempts ({100 * progress.kept / max(attempts, 1):.0f}%), gave up {progress.gave_up}, "
              f"in {seconds:.1f} s: {convo_rates[-1]:.1f} kept conversations/min ({written} words)")
        if progress.reasons:
            print("  convo drops per reason: " + ", ".join(f"{reason}: {n}" for reason, n in progress.reasons.most_common()))
        result.setdefault("convo_runs", []).append(
            {"kept": progress.kept, "attempts": attempts, "s": round(seconds, 1), "per_min": round(convo_rates[-1], 2),
             "reasons": dict(progress.reasons)})
        if reference is None:
            print("chat-builder method: llama_cpp is not importable (pip install llama-cpp-python in a benchmark env)")
            continue
        texts, ref_seconds, setting = reference
        ref_rates.append(60 * len(texts) / ref_seconds)
        words = [w for _ in range(args.per_word) for w in WORDS]
        # its raw completion continues after the prompt's "USER:"; judged by convo's filters
        faults = [synth.judge_keyword_script(f"{ROLES[0]}:{text}", word, job)[1] for text, word in zip(texts, words)]
        passing = sum(not f for f in faults)
        print(f"{label}chat-builder method (llama.cpp{setting}, one completion per conversation, raw): {len(texts)} in "
              f"{ref_seconds:.1f} s: {ref_rates[-1]:.1f} conversations/min; {passing} of {len(texts)} would pass "
              f"convo's filters ({60 * passing / ref_seconds:.1f}/min)")
        reasons = Counter(reason for f in faults for reason in f)
        if reasons:
            print("  its raw scripts' faults: " + ", ".join(f"{r}: {n}" for r, n in reasons.most_common()))
        print(f"{label}ratio convo/chat-builder: {convo_rates[-1] / ref_rates[-1]:.2f}x in kept conversations per "
              f"minute; {convo_rates[-1] / max(60 * passing / ref_seconds, 1e-9):.2f}x against its scripts that pass "
              f"the same filters")
        result.setdefault("chat_builder_runs", []).append(
            {"n": len(texts), "s": round(ref_seconds, 1), "per_min": round(ref_rates[-1], 2), "passing": passing})
    convo_rate = statistics.median(convo_rates)
    result["convo_per_min"] = round(convo_rate, 2)
    if ref_rates:
        ref_rate = statistics.median(ref_rates)
        result.update(chat_builder_per_min=round(ref_rate, 2), ratio=round(convo_rate / ref_rate, 2))
        print(f"median of {len(convo_rates)}: convo {convo_rate:.1f} kept conversations/min, chat-builder method "
              f"{ref_rate:.1f}/min: ratio {convo_rate / ref_rate:.2f}x (target >= 3x)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
