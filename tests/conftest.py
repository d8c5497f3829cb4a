"""Shared fixtures: isolation from the user's machine, tiny models, the launched app, Chromium.

Every test runs offline (HF_HUB_OFFLINE=1) with HF_HOME, the Gradio temp dir and convo's data
dir in temporary folders. The bundled model's converted cache is shared (it is deterministic).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from tiny import make_tiny_causal, make_tiny_seq2seq  # noqa: E402

# Before any test module imports huggingface_hub or gradio, which read these once at import time.
_SCRATCH = Path(tempfile.mkdtemp(prefix="convo-tests-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_SCRATCH / "hf")
os.environ["GRADIO_TEMP_DIR"] = str(_SCRATCH / "gradio")
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.pop("HF_TOKEN", None)

CHROMIUM = os.environ.get("CONVO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]


def allow_model_dir(folder) -> str:
    """Let the app's model bar load this test model by path (CONVO_MODEL_DIRS, inherited by launched apps)."""
    os.environ["CONVO_MODEL_DIRS"] = os.pathsep.join(filter(None, [os.environ.get("CONVO_MODEL_DIRS"), str(folder)]))
    return str(folder)


@pytest.fixture(scope="session", autouse=True)
def offline_environment():
    os.environ.pop("CONVO_MODEL", None)
    yield
    shutil.rmtree(_SCRATCH, ignore_errors=True)


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """Each test gets its own convo data dir (store, adapters, jobs)."""
    folder = tmp_path / "convo-data"
    monkeypatch.setenv("CONVO_DATA_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_causal(tmp_path_factory) -> str:
    return allow_model_dir(make_tiny_causal(tmp_path_factory.mktemp("tiny-causal")))


@pytest.fixture(scope="session")
def slow_tiny(tmp_path_factory) -> str:
    """A tiny model 24 layers deep with room for 2,048 positions: its replies stream for seconds
    (1,000 tokens: about 5 s on the fast engine, Zen 4), where the 2-layer model's 300 take 0.2 s,
    less than a browser's round trip to the app on a loaded machine."""
    return allow_model_dir(make_tiny_causal(tmp_path_factory.mktemp("slow-tiny"), layers=24, context=2048))


@pytest.fixture(scope="session")
def tiny_seq2seq(tmp_path_factory) -> str:
    return allow_model_dir(make_tiny_seq2seq(tmp_path_factory.mktemp("tiny-seq2seq")))


@pytest.fixture(autouse=True)
def skip_gpu_without_cuda(request):
    if request.node.get_closest_marker("gpu"):
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs CUDA")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LaunchedApp:
    """``python app.py`` in a subprocess, on a free port, with its own data dir."""

    def __init__(self, data_dir: Path, model: str | None, extra_env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.data_dir = data_dir
        env = {**os.environ, "GRADIO_SERVER_PORT": str(self.port), "CONVO_DATA_DIR": str(data_dir),
               "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        if model:
            env["CONVO_MODEL"] = model
        self.log_path = data_dir.parent / f"app-{self.port}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "config", timeout=2) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"app not ready after {timeout} s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        self.kill_jobs()

    def kill_jobs(self) -> None:
        """End the training jobs this app started: they run detached (a job outlives the app that
        started it, by design), and one left running would take the CPU from every later test."""
        import signal

        from convo import jobs

        for job in self.data_dir.glob("jobs/*/"):
            if jobs.job_state(job) in ("queued", "running"):  # alive, and not a recycled pid
                try:
                    os.killpg(jobs.read_status(job)["pid"], signal.SIGKILL)  # start_new_session=True
                except (ProcessLookupError, PermissionError):
                    pass

    def output(self) -> str:
        return self.log_path.read_text()


def _launcher(tmp_path_factory):
    apps = []

    def start(model: str | None = None, data_dir: Path | None = None, **extra_env) -> LaunchedApp:
        app = LaunchedApp(data_dir or tmp_path_factory.mktemp("app-data"), model, extra_env)
        apps.append(app)
        app.wait_ready()
        return app

    yield start
    for app in apps:
        app.stop()


@pytest.fixture
def launch(tmp_path_factory):
    """Start apps for one test: ``app = launch(model=...)``; all stopped when the test ends, so an
    idle app of an earlier test never takes CPU from a later one (2 cores: a training job slowed 20x)."""
    yield from _launcher(tmp_path_factory)


@pytest.fixture(scope="module")
def launch_shared(tmp_path_factory):
    """Start apps shared by a test module (module-scoped fixtures); stopped at module end."""
    yield from _launcher(tmp_path_factory)


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium driven by Playwright (Debian's chromium; Playwright cannot download one here)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CONVO_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def pytest_collection_modifyitems(config, items):
    """Run the quick tests first, then slow and browser ones, so failures show early."""
    def weight(item):
        return (item.get_closest_marker("browser") is not None) * 2 + (item.get_closest_marker("slow") is not None)

    items.sort(key=weight)
