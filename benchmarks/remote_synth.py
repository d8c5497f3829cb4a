"""Synthetic conversations per minute in-process vs through ``transformers serve --continuous-batching``, one run.

Run: ``python benchmarks/remote_synth.py [--items 16] [--batch-size 16] [--max-new-tokens 24]``.
Starts the server on the bundled model's converted folder (its start-up is not timed), makes the same
keyword items greedily with the in-process engine, then through the server (``remote:bench``, the same
number of concurrent requests), and prints each rate, their ratio and the CPU's features.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import free_port, machine  # noqa: E402
from synth_speed import build_job, timed  # noqa: E402


def cpu_features() -> str:
    """Which of the features that decide CPU matmul speed /proc/cpuinfo lists."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    return ", ".join(f"{name} {'yes' if name in flags else 'no'}" for name in ("avx2", "avx512f", "avx512_bf16",
                                                                                  "amx_bf16", "amx_tile"))


def start_server(folder: str, port: int, log: Path) -> subprocess.Popen:
    cli = Path(sys.executable).parent / "transformers"
    env = {k: v for k, v in os.environ.items() if "TOKEN" not in k and "KEY" not in k}
    proc = subprocess.Popen([str(cli), "serve", folder, "--port", str(port), "--device", "cpu",
                             "--continuous-batching"], stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"transformers serve exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                print(f"transformers serve --continuous-batching up in {time.monotonic() - started:.1f} s")
                return proc
        except OSError:
            if time.monotonic() - started > 600:
                proc.kill()
                raise SystemExit("transformers serve did not start in 600 s")
            time.sleep(0.5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=16, help="keyword conversations to make each way")
    parser.add_argument("--batch-size", type=int, default=16, help="conversations (requests) at once")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="tokens per line")
    args = parser.parse_args(argv)
    os.environ.setdefault("CONVO_MAX_BATCH", str(args.batch_size))

    from convo import synth
    from convo.engine import remote
    from convo.engine import bundled_model_dir, get_model
    from convo.settings import Sampling

    folder = str(bundled_model_dir())
    port = free_port()
    server = start_server(folder, port, Path(os.environ.get("TMPDIR", "/tmp")) / f"convo-serve-{port}.log")
    try:
        os.environ[remote.ENDPOINTS_ENV] = json.dumps([{"name": "bench", "base_url": f"http://127.0.0.1:{port}/v1",
                                                        "model": folder, "concurrency": args.batch_size,
                                                        "timeout": 600}])
        job = build_job("keyword", args.items)
        items = list(job.items())[:args.items]
        sampling = Sampling(temperature=0.0, repetition_penalty=1.0, max_new_tokens=args.max_new_tokens)
        rates = {}
        for name in ("bundled", "remote:bench"):
            lm = get_model(name)
            synth.generate_items(lm, job, items[:1], sampling, batch_size=1)  # warm-up
            seconds, results = timed(lambda: synth.generate_items(lm, job, items, sampling, batch_size=args.batch_size))
            rates[name] = 60 * len(items) / seconds
            kept = sum(r.kept for r in results)
            print(f"{name:>13}: {seconds:7.1f} s  {rates[name]:6.2f} conversations/min  (kept {kept}/{len(items)})")
    finally:
        server.terminate()
        server.wait(30)
    ratio = rates["remote:bench"] / rates["bundled"]
    print(f"ratio: through transformers serve --continuous-batching = {ratio:.2f}x in-process")
    print(f"machine: {machine()}")
    print(f"cpu features: {cpu_features()}")
    print(json.dumps({"items": len(items), "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
                      "in_process_per_min": round(rates["bundled"], 2),
                      "remote_per_min": round(rates["remote:bench"], 2), "ratio": round(ratio, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
