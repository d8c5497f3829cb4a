"""Synthetic conversations per minute with the bundled model: batched vs one at a time, measured in one run.

Run: ``python benchmarks/synth_speed.py [--mode keyword|persona] [--items 16] [--batch-size 16]``.
Both ways make the same items with greedy decoding (the same conversations in fp32; in bf16 with
quantized weights batched rows round differently, so the words written each way are printed too);
prints each rate and their ratio (target: batched at least 3x faster).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine  # noqa: E402

WORDS = ["apple", "river", "music", "garden", "rocket", "bread", "winter", "library", "forest", "bicycle",
         "ocean", "candle", "mountain", "violin", "island", "planet", "teacher", "market", "bridge", "cloud",
         "honey", "castle", "camera", "desert", "museum", "pencil", "harbor", "tiger", "window", "meadow",
         "kitchen", "comet"]
SEEDS = ["I want to start running but I keep giving up.", "Why is the sky blue?", "What should I cook tonight?",
         "My cat ignores me.", "How do volcanoes work?", "I have an exam tomorrow.", "Can you help me plan a trip?",
         "I cannot sleep at night."]


def build_job(mode: str, items: int):
    """``items`` conversations of the chosen mode (keyword: one word each; persona: seeds x a 2x2 grid)."""
    from convo import synth

    if mode == "keyword":
        if items > len(WORDS):
            raise SystemExit(f"--items: at most {len(WORDS)} in keyword mode")
        config = synth.KeywordConfig("bench", synth.DEFAULT_KEYWORD_PROMPT_LINES, WORDS[:items], synth.DEFAULT_EXCLUDE)
        return synth.KeywordJob(config)
    personas = synth.grid([("learn", "wants to understand how things work"), ("vent", "had a frustrating day")],
                          [("curious", "asks many follow-up questions"), ("terse", "writes very short messages")])
    seeds = SEEDS[:max(1, -(-items // len(personas)))]
    return synth.PersonaJob(seeds, personas, turns=2, samples=1)


def forget_prompts(lm) -> None:
    """Empty the CPU engine's prefix cache (KV of earlier prompts and replies), if the model has one."""
    from convo.engine.fastpath import engine_for

    engine = engine_for(lm)
    if engine is not None:
        engine.prefixes.entries.clear()


def words(results) -> int:
    return sum(len(m["content"].split()) for r in results for m in r.messages)


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("keyword", "persona"), default="keyword")
    parser.add_argument("--items", type=int, default=16, help="conversations to make each way")
    parser.add_argument("--batch-size", type=int, default=16, help="conversations generated together")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="per line/message (default: the mode's)")
    args = parser.parse_args(argv)
    # The CPU engine decodes at most CONVO_MAX_BATCH requests per step: let it hold the whole batch.
    os.environ.setdefault("CONVO_MAX_BATCH", str(args.batch_size))

    from convo import synth
    from convo.engine import get_model
    from convo.settings import Sampling

    lm = get_model("bundled")
    job = build_job(args.mode, args.items)
    items = list(job.items())[:args.items]
    defaults = synth.default_sampling(job, args.max_new_tokens)
    sampling = Sampling(temperature=0.0, repetition_penalty=defaults.repetition_penalty,
                        max_new_tokens=defaults.max_new_tokens)  # greedy: both ways do the same work
    warmup, _ = timed(lambda: synth.generate_items(lm, job, items[:1], sampling, batch_size=1))
    forget_prompts(lm)  # neither way may reuse the other's cached prompts
    single_s, single = timed(lambda: [synth.generate_items(lm, job, [item], sampling, batch_size=1)[0]
                                      for item in items])
    forget_prompts(lm)
    batched_s, batched = timed(lambda: synth.generate_items(lm, job, items, sampling, batch_size=args.batch_size))
    same = sum(a.messages == b.messages for a, b in zip(single, batched))
    # In bf16 with quantized weights a batched step rounds differently from a one-row step, so long
    # greedy texts diverge: the words written each way show both did comparable work.
    words_single, words_batched = words(single), words(batched)
    per_minute_single = 60 * len(items) / single_s
    per_minute_batched = 60 * len(items) / batched_s
    ratio = per_minute_batched / per_minute_single
    print(machine())
    print(f"model: {lm.spec.label} on {lm.device}; mode {args.mode} ({job.strategy}); {len(items)} conversations; "
          f"{sampling.max_new_tokens} tokens per step; warm-up {warmup:.1f} s")
    print(f"one at a time : {single_s:7.1f} s  {per_minute_single:6.1f} conversations/min  "
          f"({words_single} words, {60 * words_single / single_s:.0f}/min)")
    print(f"batched ({args.batch_size:>3}) : {batched_s:7.1f} s  {per_minute_batched:6.1f} conversations/min  "
          f"({words_batched} words, {60 * words_batched / batched_s:.0f}/min)")
    print(f"ratio: batched is {ratio:.2f}x faster (target >= 3x); identical conversations: {same}/{len(items)}")
    print(json.dumps({"mode": args.mode, "items": len(items), "batch_size": args.batch_size,
                      "single_per_min": round(per_minute_single, 2), "batched_per_min": round(per_minute_batched, 2),
                      "ratio": round(ratio, 2), "identical": same, "words_single": words_single,
                      "words_batched": words_batched}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
