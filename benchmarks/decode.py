"""Single-stream decode speed and time to first token for the bundled model: convo's fast path
against llama.cpp on the same GGUF (when ``llama_cpp`` is importable) and plain transformers.

    python benchmarks/decode.py [--tokens 128] [--threads 2]

llama.cpp runs in a child process. When it fails, its error is printed (stderr tail, or the signal
that killed it); after a crash with the default ``n_batch`` (llama-cpp-python 0.3.36 built with
default flags segfaults on AMX Xeons for any n_batch above 1) it is measured again with n_batch=1.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
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
    from convo.engine import generation
    from convo.engine import get_model

    lm = get_model("bundled")
    return [generation.render_prompt(lm, [{"role": "user", "content": p}]) for p in PROMPTS]


def convo_runs(tokens: int):
    from convo.engine import generation
    from convo.engine.fastpath import engine_for
    from convo.engine import get_model
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

    from convo.engine import load_model
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


def load_llama(threads: int, n_batch: int | None = None):
    """llama.cpp on the bundled GGUF, or None when ``llama_cpp`` is not importable."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    from convo.engine import bundled_gguf_path

    batch = {"n_batch": n_batch} if n_batch else {}  # None: llama-cpp-python's default (512)
    return Llama(model_path=str(bundled_gguf_path()), n_threads=threads, n_ctx=2048, verbose=False, **batch)


def llama_cpp_runs(tokens: int, prompts: list[str], threads: int, n_batch: int | None = None):
    llm = load_llama(threads, n_batch)
    if llm is None:
        return None
    list(llm.create_completion(prompts[0], max_tokens=8, temperature=0.0, stream=True))  # warm-up
    results = []
    for prompt in prompts:
        stream = llm.create_completion(prompt, max_tokens=tokens, temperature=0.0, stream=True)
        results.append(measure(stream))
    return results


SAFE_BUILD = ('CMAKE_ARGS="-DGGML_CPU_REPACK=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" '
              "pip install --force-reinstall --no-cache-dir llama-cpp-python")


def child_failure(returncode: int, stderr: str, lines: int = 15) -> str:
    """What went wrong in a child process, in words: the signal that killed it (a negative return
    code) or its exit status, then the last ``lines`` lines of its stderr.

    >>> child_failure(-11, "")
    'killed by SIGSEGV (segmentation fault); no output on stderr'
    >>> child_failure(1, "Traceback...\\nValueError: bad")
    'exit status 1; stderr ends:\\n    Traceback...\\n    ValueError: bad'
    """
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        what = f"killed by {name}" + (" (segmentation fault)" if name == "SIGSEGV" else "")
    else:
        what = f"exit status {returncode}"
    tail = stderr.strip().splitlines()[-lines:]
    return what + ("; stderr ends:\n" + "\n".join("    " + line for line in tail) if tail else "; no output on stderr")


def llama_cpp_child(tokens: int, prompts: list[str], threads: int, n_batch: int | None, script: str = __file__,
                    flag: str = "--llama-cpp-only", timeout: float = 900) -> tuple[object, str | None]:
    """Run ``script`` with ``flag`` (its llama.cpp-only mode: the prompts on stdin, a JSON result as its
    last line) in a child process: (result, None), (None, None) when llama_cpp is not installed, or
    (None, what went wrong)."""
    command = [sys.executable, script, flag, "--tokens", str(tokens), "--threads", str(threads)]
    command += ["--n-batch", str(n_batch)] if n_batch else []
    done = subprocess.run(command, input=json.dumps(prompts), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        return None, child_failure(done.returncode, done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1]), None


def llama_cpp_in_own_process(tokens: int, prompts: list[str], threads: int, child=None):
    """llama.cpp measured in a process of its own: next to torch's OpenMP threads in this process it
    ran 35-55% slower (measured here: 53-78 tok/s in-process vs 105-119 tok/s alone). After a crash
    with the default settings it runs again with n_batch=1, and says so. ``child``: how to run it
    (``llama_cpp_child`` with another script's mode)."""
    child = child or llama_cpp_child
    runs, error = child(tokens, prompts, threads, None)
    if error is None:
        return runs, ""
    print(f"llama.cpp run failed with the default n_batch: {error}")
    runs, retry_error = child(tokens, prompts, threads, 1)
    if retry_error is not None:
        raise SystemExit(f"llama.cpp failed again with n_batch=1: {retry_error}\n"
                         f"A build without the CPU repack and AMX paths may work: {SAFE_BUILD}")
    print("llama.cpp: measured with n_batch=1 instead (prompts are evaluated one token at a time, so its TTFT "
          "is slower than a working default build; decode tok/s is comparable). The default crashes are known "
          f"on AMX Xeons with llama-cpp-python 0.3.36; a build that may avoid them: {SAFE_BUILD}")
    return runs, " (n_batch=1)"


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
    parser.add_argument("--n-batch", type=int, default=None, help=argparse.SUPPRESS)  # the child's n_batch
    args = parser.parse_args()
    if args.llama_cpp_only:
        print(json.dumps(llama_cpp_runs(args.tokens, json.loads(sys.stdin.read()), args.threads, args.n_batch)))
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
    llama, setting = llama_cpp_in_own_process(args.tokens, prompts, args.threads)
    if llama is None:
        print("llama.cpp: llama_cpp is not importable (pip install llama-cpp-python in a benchmark env)")
        return
    llama_rate, llama_ttft = summarize(f"llama.cpp{setting}", llama)
    print(f"ratio convo/llama.cpp: decode {convo_rate / llama_rate:.2f}x, TTFT {llama_ttft / convo_ttft:.2f}x")


if __name__ == "__main__":
    main()
