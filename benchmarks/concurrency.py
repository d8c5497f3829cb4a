"""Many users at once: launches the app on the bundled model and runs 1, 4 and 8 concurrent chat
users through gradio_client, printing aggregate tokens/s and the worst time to first token.

    python benchmarks/concurrency.py [--tokens 64] [--users 1 4 8]
"""
from __future__ import annotations

import argparse
import threading
import time

from common import App, machine

KNOBS = dict(system_prompt="You are a helpful assistant.", curious=False, interviewer=False, temperature=0.7,
             top_p=0.9, top_k=50, repetition_penalty=1.1, seed=1)
TOPICS = ["dragons", "bicycles", "the ocean", "volcanoes", "music", "chess", "bread", "the moon"]


def one_user(url: str, topic: str, tokens: int, results: list, barrier: threading.Barrier) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    history = [{"role": "user", "content": [{"type": "text", "text": f"Tell me a long story about {topic}."}]}]
    args = (history, "bundled", "(none)", "auto", KNOBS["system_prompt"], False, False, KNOBS["temperature"],
            KNOBS["top_p"], KNOBS["top_k"], tokens, KNOBS["repetition_penalty"], KNOBS["seed"])
    barrier.wait()
    started = time.perf_counter()
    job = client.submit(*args, api_name="/chat")
    first = None
    for update in job:  # the outputs: the conversation first, then the chat status and the chips
        if first is None and len(update[0]) > 1 and any(p.get("text") for p in update[0][-1]["content"]):
            first = time.perf_counter() - started
    final = job.outputs()[-1][0][-1]["content"]
    text = "".join(p.get("text", "") for p in final)
    results.append((first or time.perf_counter() - started, time.perf_counter() - started, text))


def run(url: str, users: int, tokens: int, count_tokens) -> tuple[float, float]:
    results: list = []
    barrier = threading.Barrier(users)
    threads = [threading.Thread(target=one_user, args=(url, TOPICS[i % len(TOPICS)], tokens, results, barrier))
               for i in range(users)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    total = sum(count_tokens(r[2]) for r in results)
    worst_ttft = max(r[0] for r in results)
    print(f"{users} users: {total / wall:7.1f} tok/s aggregate, worst TTFT {worst_ttft * 1000:7.0f} ms, "
          f"{total} tokens in {wall:.1f} s")
    return total / wall, worst_ttft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from convo.engine import bundled_model_dir

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir())
    print(machine())
    app = App()
    print(f"app ready in {app.ready_s:.1f} s")
    try:
        run(app.url, 1, 8, lambda t: len(tokenizer(t).input_ids))  # warm-up: model load, engine build
        baseline = None
        for users in args.users:
            rate, ttft = run(app.url, users, args.tokens, lambda t: len(tokenizer(t).input_ids))
            if baseline is None:
                baseline = (rate, ttft)
            else:
                print(f"   vs 1 user: {rate / baseline[0]:.2f}x aggregate tok/s, worst TTFT {ttft / baseline[1]:.2f}x")
    finally:
        app.stop()


if __name__ == "__main__":
    main()
