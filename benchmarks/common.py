"""Shared bits of the benchmark scripts: machine description, launching the app, timing."""
from __future__ import annotations

import datetime
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def machine() -> str:
    """One line: date, CPU model and features, cores, torch threads."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{datetime.date.today()} · {cpu} · {cpu_features()} · {os.cpu_count()} cores · torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads) · Python {platform.python_version()}")


def cpu_features() -> str:
    """The CPU's matrix and vector features that decide which kernels run: AVX2, AVX512-BF16, AMX.

    Printed with every benchmark's figures, since the same script gives different ratios on each kind.
    """
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return "unknown (no /proc/cpuinfo)"
    names = {"avx2": "AVX2", "avx512f": "AVX512F", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16"}
    present = [label for flag, label in names.items() if flag in flags]
    absent = [label for flag, label in names.items() if flag not in flags]
    return " ".join(present) + (f" (no {', no '.join(absent)})" if absent else "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """``python app.py`` (or another ``script``) on a free port; ``ready_s`` is the time until it answers HTTP."""

    def __init__(self, env: dict | None = None, script: str = "app.py"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        full_env = {**os.environ, "GRADIO_SERVER_PORT": str(self.port), "HF_HUB_OFFLINE": "1",
                    "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
        started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, script], cwd=ROOT, env=full_env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("app exited")
            try:
                urllib.request.urlopen(self.url + "config", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        self.ready_s = time.monotonic() - started

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
