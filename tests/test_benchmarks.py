"""The benchmark scripts' own logic, without running a benchmark: the CPU-feature line every script
prints and decode.py's handling of a failing llama.cpp child (no llama-cpp-python needed).

Run: ``python -m pytest tests/test_benchmarks.py -q``
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402
import decode  # noqa: E402


def test_cpu_features_names_what_is_there_and_what_is_not(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    real_path = common.Path
    monkeypatch.setattr(common, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert common.cpu_features() == "AVX2 AVX512F AVX512-BF16 (no AMX-BF16)"
    assert "AVX2" in common.machine()


def test_child_failure_names_the_signal_and_keeps_the_stderr_tail():
    message = decode.child_failure(-11, "\n".join(f"line {i}" for i in range(40)))
    assert message.startswith("killed by SIGSEGV (segmentation fault); stderr ends:")
    assert "line 39" in message and "line 24" not in message
    assert decode.child_failure(1, "") == "exit status 1; no output on stderr"


def test_a_crash_with_the_default_n_batch_falls_back_to_one_and_says_so(monkeypatch, capsys):
    calls = []

    def child(tokens, prompts, threads, n_batch):
        calls.append(n_batch)
        return (None, decode.child_failure(-11, "ggml_repack")) if n_batch is None else ([(0.1, 90.0, 8)], None)

    monkeypatch.setattr(decode, "llama_cpp_child", child)
    runs, setting = decode.llama_cpp_in_own_process(8, ["hi"], 2)
    out = capsys.readouterr().out
    assert calls == [None, 1] and runs == [(0.1, 90.0, 8)] and setting == " (n_batch=1)"
    assert "SIGSEGV" in out and "ggml_repack" in out and "n_batch=1 instead" in out


def test_a_crash_with_both_settings_stops_with_both_errors_and_build_flags(monkeypatch):
    monkeypatch.setattr(decode, "llama_cpp_child", lambda *a: (None, decode.child_failure(-6, "abort")))
    with pytest.raises(SystemExit, match="(?s)SIGABRT.*GGML_CPU_REPACK=OFF"):
        decode.llama_cpp_in_own_process(8, ["hi"], 2)


def streams_the_story(users: list) -> None:
    """1 and then 3 of ``users`` at once each get the floor apps' story, streamed."""
    import concurrency

    for n in (1, 3):
        results: list = []
        barrier = threading.Barrier(n)
        threads = [threading.Thread(target=concurrency.one_user, args=(users[i], "Hi", 10, results, barrier))
                   for i in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == n
        for first, whole, text in results:
            assert text == "Once upon a time there was a dragon Once upon"
            assert 0 < first <= whole


def test_the_gradio_floor_app_streams_its_story_to_the_benchmarks_page_users():
    """concurrency.py's reference: benchmarks/gradio_floor.py takes the chat's arguments from the
    same page client and streams its fixed story to 1 and then 3 users at once."""
    import concurrency

    app = common.App(script="benchmarks/gradio_floor.py")
    try:
        streams_the_story(concurrency.connect(app.url, 3, "page"))
    finally:
        app.stop()


def test_the_http_floor_streams_the_same_story_with_the_same_protocol():
    """concurrency.py's second reference: benchmarks/http_floor.py (no Gradio) answers the same page
    client's queue/join and event stream, diffs included, with the same story."""
    import concurrency
    import http_floor

    app = common.App(script="benchmarks/http_floor.py")
    try:
        streams_the_story([concurrency.PageUser(app.url, http_floor.Endpoint(app.url)) for _ in range(3)])
    finally:
        app.stop()
