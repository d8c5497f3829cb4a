"""How often the bundled model's chat replies fall into a loop, and what the loop guard saves: each
prompt is answered twice with the same seed, through ``convo.chat.reply_stream`` (the guard ends a
reply at its loop) and through the bare stream (the reference), taking turns.

    python benchmarks/reply_loops.py [--seeds 3] [--max-new-tokens 256]

The model runs at its recommended sampling (the Chat tab's defaults). A reply "loops" when its text
ends in three or more back-to-back copies of one block (``convo.engine.loops.loop_start``). For each way the
script prints the loops, the tokens generated and the time, and for the guarded replies what was
left of each loop.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from common import machine

PROMPTS = [
    "Hi! I just adopted a beagle puppy. She chews shoes. What should I do?",
    "What is a good breakfast before a long run?",
    "Can you explain how rainbows form?",
    "I want to start a vegetable garden on my balcony. Where do I begin?",
    "Tell me about the history of the bicycle.",
    "What should I pack for a weekend of camping in the mountains?",
    "How do I make my sourdough bread less dense?",
    "Why do cats purr?",
    "I'm nervous about a job interview tomorrow. Any tips?",
    "What is the difference between weather and climate?",
    "Recommend a few board games for a family evening.",
    "How do volcanoes form?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args()
    from convo import chat
    from convo.engine import generation, get_model
    from convo.engine.loops import loop_start
    from convo.settings import BUNDLED, ChatSettings, ModelSpec, recommended_sampling

    print(machine())
    lm = get_model(ModelSpec("bundled"))
    base = replace(recommended_sampling(BUNDLED)[0], max_new_tokens=args.max_new_tokens)
    settings = ChatSettings(curious=False)
    tokens = lambda text: len(lm.tokenizer(text, add_special_tokens=False).input_ids)  # noqa: E731

    def bare(messages, sampling):
        conversation = chat.with_system(messages, settings.system_prompt)
        return "".join(generation.stream(lm, conversation, sampling))

    def guarded(messages, sampling):
        return list(chat.reply_stream(lm, messages, settings, sampling))[-1]

    ways = {"loop guard": guarded, "bare stream": bare}
    spent = {name: [] for name in ways}
    counted = {name: [] for name in ways}
    loops, same, kept = 0, 0, []  # kept: (prompt, the end of a guarded reply that was cut)
    guarded([{"role": "user", "content": "Hello"}], replace(base, seed=0))  # warm-up
    for seed in range(1, args.seeds + 1):
        for prompt in PROMPTS:
            messages, sampling = [{"role": "user", "content": prompt}], replace(base, seed=seed)
            texts = {}
            for name, way in ways.items():
                started = time.perf_counter()
                texts[name] = way(messages, sampling)
                spent[name].append(time.perf_counter() - started)
                counted[name].append(tokens(texts[name]))
            loops += loop_start(texts["bare stream"]) is not None
            if texts["loop guard"].rstrip() != texts["bare stream"].rstrip():  # the guard cut it
                kept.append((prompt, texts["loop guard"][-70:]))
                same += texts["bare stream"].startswith(texts["loop guard"].rstrip())
    n = len(PROMPTS) * args.seeds
    for name in ways:
        print(f"{name:>11}: {sum(spent[name]):6.1f} s for {n} replies, {sum(counted[name])} tokens "
              f"(median {statistics.median(counted[name]):.0f} a reply)")
    print(f"bare replies ending in a loop: {loops} of {n}; replies the guard cut: {len(kept)} of {n}, "
          f"{same} of them the bare reply's beginning")
    for prompt, tail in kept:
        print(f"  {prompt[:40]!r}: the guarded reply ends {tail!r}")
    print(f"loop guard vs bare stream: {sum(spent['bare stream']) / sum(spent['loop guard']):.2f}x less time, "
          f"{sum(counted['bare stream']) / max(1, sum(counted['loop guard'])):.2f}x fewer tokens")


if __name__ == "__main__":
    main()
