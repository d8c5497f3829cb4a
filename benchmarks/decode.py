"""Single-stream decode speed and time to first token for the bundled model: convo's fast path
against llama.cpp on the same GGUF (when ``llama_cpp`` is importable) and plain transformers.

    python benchmarks/decode.py [--tokens 128] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from common import machine

PROMPTS = ["Tell me a long story about a dragon who learns to read.",
           "Explain how a bicycle works, step by step, in detail.",
           "Write a letter to a friend about your summer holidays by the sea."]


def measure(stream_tokens) -> tuple[float, float, int]:
    """(time to first token s, decode tokens/s after the first, tokens) for a token iterator."""
    started = time.perf_counter()
    first, count = None, 0
    for _ in stream_tokens:
        count += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return first - started, (count - 1) / max(end - first, 1e-9), count


def rendered_prompts() -> list[str]:
    """The prompts in the bundled model's chat template (the same text for every engine)."""
    from convo import generation
    from convo.models import get_model

    lm = get_model("bundled")
    return [generation.render_prompt(lm, [{"role": "user", "content": p}]) for p in PROMPTS]


def convo_runs(tokens: int):
    from convo import generation
    from convo.fastpath import engine_for
    from convo.models import get_model
    from convo.settings import Sampling

    lm = get_model("bundled")  # the app's way: loaded on a thread that exits (see convo/threads.py)
    engine = engine_for(lm)
    sampling = Sampling(temperature=0, max_new_tokens=tokens, repetition_penalty=1.0)
    prompts = rendered_prompts()
    ids = [generation._prompt_ids(lm, p) for p in prompts]
    list(engine.submit(ids[0], sampling).tokens())  # warm-up
    return [measure(engine.submit(i, sampling).tokens()) for i in ids], prompts


def transformers_runs(tokens: int, prompts: list[str]):
    import threading

    import torch
    from transformers import TextIteratorStreamer

    from convo.models import load_model
    from convo.settings import ModelSpec

    lm = load_model(ModelSpec("bundled", dtype="bfloat16"))
    results = []
    warm = lm.tokenizer(prompts[0], return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():  # warm-up, as the other engines get
        lm.model.generate(**warm, max_new_tokens=8, do_sample=False)
    for prompt in prompts:
        inputs = lm.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        streamer = TextIteratorStreamer(lm.tokenizer, skip_prompt=True)
        kwargs = dict(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, streamer=streamer)
        thread = threading.Thread(target=lambda: lm.model.generate(**kwargs))
        with torch.inference_mode():
            thread.start()
            # the streamer yields words, not tokens: count tokens from the final text instead
            ttft, _, _ = measure(streamer)
        thread.join()
        started = time.perf_counter()
        with torch.inference_mode():
            lm.model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        total = time.perf_counter() - started
        results.append((ttft, (tokens - 1) / max(total - ttft, 1e-9), tokens))
    return results


def llama_cpp_runs(tokens: int, prompts: list[str], threads: int):
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    from convo.models import bundled_gguf_path

    llm = Llama(model_path=str(bundled_gguf_path()), n_threads=threads, n_ctx=2048, verbose=False)
    list(llm.create_completion(prompts[0], max_tokens=8, temperature=0.0, stream=True))  # warm-up
    results = []
    for prompt in prompts:
        stream = llm.create_completion(prompt, max_tokens=tokens, temperature=0.0, stream=True)
        results.append(measure(stream))
    return results


def llama_cpp_in_own_process(tokens: int, prompts: list[str], threads: int):
    """llama.cpp measured in a process of its own: next to torch's OpenMP threads in this process it
    ran 35-55% slower (measured here: 53-78 tok/s in-process vs 105-119 tok/s alone)."""
    command = [sys.executable, __file__, "--llama-cpp-only", "--tokens", str(tokens), "--threads", str(threads)]
    done = subprocess.run(command, input=json.dumps(prompts), capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"llama.cpp run failed:\n{done.stderr[-2000:]}")
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    return None if runs is None else [tuple(run) for run in runs]


def summarize(name: str, runs) -> tuple[float, float]:
    ttft = sum(r[0] for r in runs) / len(runs)
    rate = sum(r[1] for r in runs) / len(runs)
    print(f"{name:<22} decode {rate:7.1f} tok/s   TTFT {ttft * 1000:7.1f} ms   ({sum(r[2] for r in runs)} tokens)")
    return rate, ttft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--llama-cpp-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.llama_cpp_only:
        print(json.dumps(llama_cpp_runs(args.tokens, json.loads(sys.stdin.read()), args.threads)))
        return
    import torch

    torch.set_num_threads(args.threads)
    print(machine())
    from convo.threads import run_in_fresh_thread

    # transformers first, on a thread that exits: once the engine thread holds an OpenMP team, any
    # other torch thread runs throttled (convo/threads.py), which would flatter the ratio below
    hf = run_in_fresh_thread(transformers_runs, args.tokens, rendered_prompts())
    runs, prompts = convo_runs(args.tokens)
    convo_rate, convo_ttft = summarize("convo (fast path)", runs)
    hf_rate, hf_ttft = summarize("transformers bf16", hf)
    print(f"ratio convo/transformers: decode {convo_rate / hf_rate:.2f}x, TTFT {hf_ttft / convo_ttft:.2f}x faster")
    llama = llama_cpp_in_own_process(args.tokens, prompts, args.threads)
    if llama is None:
        print("llama.cpp: llama_cpp is not importable (pip install llama-cpp-python in a benchmark env)")
        return
    llama_rate, llama_ttft = summarize("llama.cpp (same GGUF)", llama)
    print(f"ratio convo/llama.cpp: decode {convo_rate / llama_rate:.2f}x, TTFT {llama_ttft / convo_ttft:.2f}x")


if __name__ == "__main__":
    main()
