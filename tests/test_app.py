"""The launched app through HTTP and gradio_client: sessions, model errors, sharing, safety probes."""
import ast
import json
import sqlite3
import concurrent.futures
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client

from conftest import LaunchedApp
from convo.store import Store

ROOT = Path(__file__).resolve().parents[1]
KNOBS = dict(system_prompt="You are brief.", curious=False, interviewer=False, temperature=0, top_p=0.9, top_k=50,
             max_new_tokens=12, repetition_penalty=1.0, seed=-1)


def ui_files():
    return [ROOT / "app.py", *sorted((ROOT / "convo" / "ui").glob("*.py"))]


@pytest.mark.parametrize("path", ui_files(), ids=lambda p: p.name)
def test_ui_code_imports_neither_torch_nor_transformers(path):
    tree = ast.parse(path.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"torch", "transformers", "peft", "bitsandbytes"}


def test_building_the_app_loads_no_torch():
    code = "import sys, app; from convo.ui import build_app; build_app(); print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture(scope="module")
def app(launch_shared, tiny_causal):
    return launch_shared(model=tiny_causal)


def as_chatbot(history):
    return [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in history]


def texts(history):
    return [{"role": m["role"], "content": "".join(p["text"] for p in m["content"] if p.get("type") == "text")}
            for m in history]


def chat(client, history, model):
    """The /chat endpoint; it returns the conversation, then the chat status (the chips are a State: not in the API)."""
    result = client.predict(as_chatbot(history), model, "(none)", "auto", *KNOBS.values(), api_name="/chat")
    return texts(result[0] if isinstance(result, tuple) else result)


def _speaks(fn, seen: set, depth: int = 3) -> list[str]:
    """The toasts (gr.Warning, gr.Info, gr.Error) ``fn`` shows, or the convo functions it calls do."""
    import inspect
    import re

    if depth == 0 or fn in seen or not getattr(fn, "__module__", "").startswith("convo"):
        return []
    seen.add(fn)
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return []
    found = [f"{fn.__qualname__}: gr.{kind}" for kind in re.findall(r"gr\.(Warning|Info|Error)\(", source)]
    for name in set(re.findall(r"\b(\w+)\(", source)):
        called = getattr(fn, "__globals__", {}).get(name)
        if inspect.isfunction(called):
            found += _speaks(called, seen, depth - 1)
    return found


def test_no_unqueued_event_shows_a_message_the_page_would_never_get():
    """Gradio shows no toast from an event run outside the queue (``queue=False``): "Make grid" with
    an empty table, Cancel's "Cancelling" and (before it was queued) Undo's "not yet" said nothing."""
    from convo.ui import build_app

    demo = build_app()
    fns = demo.fns.values() if isinstance(demo.fns, dict) else demo.fns
    silent = [said for event in fns if event.queue is False and event.fn for said in _speaks(event.fn, set())]
    assert silent == []


def test_two_sessions_chat_at_once_and_see_only_their_own_history(app, tiny_causal):
    alice, bob = Client(app.url, verbose=False), Client(app.url, verbose=False)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        a = pool.submit(chat, alice, [{"role": "user", "content": "I am Alice"}], tiny_causal)
        b = pool.submit(chat, bob, [{"role": "user", "content": "I am Bob"}], tiny_causal)
        a, b = a.result(timeout=120), b.result(timeout=120)
    assert [m["role"] for m in a] == ["user", "assistant"] and a[0]["content"] == "I am Alice"
    assert [m["role"] for m in b] == ["user", "assistant"] and b[0]["content"] == "I am Bob"
    assert a[1]["content"] and b[1]["content"]
    with sqlite3.connect(app.data_dir / "convo.sqlite3") as db:
        saved = [json.loads(row[0]) for row in db.execute("SELECT messages FROM conversations")]
    assert sorted(m[0]["content"] for m in saved) == ["I am Alice", "I am Bob"]
    assert all(len(m) == 2 for m in saved)


def test_unloadable_model_is_a_clear_error_and_chat_keeps_working(app, tiny_causal):
    client = Client(app.url, verbose=False)
    started = time.monotonic()
    model, adapter, quantize, status = client.predict("nobody/does-not-exist-42", "(none)", "auto", api_name="/load_model")
    assert time.monotonic() - started < 10
    assert "Could not load model 'nobody/does-not-exist-42'" in status
    assert model == tiny_causal
    reply = chat(client, [{"role": "user", "content": "still there?"}], model)
    assert reply[-1]["role"] == "assistant" and reply[-1]["content"]


def test_share_and_revoke_through_the_api(app, tiny_causal):
    client = Client(app.url, verbose=False)
    history = chat(client, [{"role": "user", "content": "Share me"}], tiny_causal)
    link, note, = client.predict(as_chatbot(history), tiny_causal, "(none)", *list(KNOBS.values())[0:1], *list(KNOBS.values())[3:],
                                 0, api_name="/share")
    share_id = link.rsplit("share=", 1)[1]
    assert link.startswith(app.url) and len(share_id) >= 22
    store = Store(app.data_dir / "convo.sqlite3")
    snapshot = store.get_share(share_id)
    assert [m["content"] for m in snapshot.messages][1:] == [m["content"] for m in history]
    assert "secret" in note.lower()
    with pytest.raises(Exception):
        Client(app.url, verbose=False).predict(link, "", api_name="/revoke")  # another session, no secret
    assert store.get_share(share_id) is not None
    from convo.ui.sharing import shared_header

    header = shared_header(snapshot)  # the shared view's line: set values only (it listed "stop=[]")
    assert "temperature=" in header and "stop=" not in header, header
    assert "Revoked" in client.predict(link, "", api_name="/revoke")
    assert store.get_share(share_id) is None


@pytest.mark.parametrize("path", ["gradio_api/file=/etc/passwd", "gradio_api/file=../../../../etc/passwd",
                                  "gradio_api/file=%2e%2e/%2e%2e/etc/passwd", "file=/etc/passwd",
                                  "gradio_api/file=app.py", "gradio_api/file=convo/store.py"])
def test_path_traversal_is_refused(app, path):
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(app.url + path, timeout=10)
    assert info.value.code in (400, 403, 404)


def test_oversize_upload_is_refused(app):
    from convo.data import MAX_BYTES

    boundary = "convo-test-boundary"
    over = (MAX_BYTES // 10**6 + 1) * 1024 * 1024  # Gradio's cap is in MiB
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.json\"\r\n"
            "Content-Type: application/json\r\n\r\n").encode() + b"0" * over + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(app.url + "gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=60)
    assert info.value.code in (400, 413)
    assert not list(Path(app.data_dir).rglob("big.json"))


def test_internal_events_are_not_public_api(app):
    info = Client(app.url, verbose=False).view_api(return_format="dict", print_info=False)
    names = set(info["named_endpoints"])
    assert {"/chat", "/share", "/revoke", "/load_model"} <= names
    assert not any(n.startswith("/lambda") or "add_user_message" in n or "stop_reply" in n for n in names)


@pytest.mark.slow
def test_second_start_is_ready_in_under_10_seconds(launch, tmp_path_factory):
    """Ready = the app answers and its page works; the cached model finishes loading in the background
    (measured here: page in ~5 s, model loaded ~10-11 s after start, a first chat waits for it)."""
    first = launch(data_dir=tmp_path_factory.mktemp("first"))  # converts the bundled model if needed
    Client(first.url, verbose=False).predict("bundled", "(none)", "auto", api_name="/load_model")
    first.stop()
    second = LaunchedApp(tmp_path_factory.mktemp("second"), None)
    try:
        ready = second.wait_ready()
        assert ready < 10, f"second start took {ready:.1f} s"
        started = time.monotonic()
        _model, _adapter, _quantize, status = Client(second.url, verbose=False).predict(
            "bundled", "(none)", "auto", api_name="/load_model")
        assert status.startswith("Loaded `bundled`"), status
        assert ready + time.monotonic() - started < 20
    finally:
        second.stop()


def test_download_folders_older_than_a_day_are_removed(tmp_path, monkeypatch):
    import os

    from convo.ui import chat as chat_ui
    from convo.ui import questions as questions_ui
    from convo.ui.common import EXPORT_MAX_AGE_S, export_folder

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    stale, recent = export_folder("questions"), export_folder("conversation")
    (stale / "questions.csv").write_text("rank,text\n")
    old = time.time() - EXPORT_MAX_AGE_S - 60
    os.utime(stale, (old, old))
    exported = Path(chat_ui.export([{"role": "user", "content": "Hi"}], "bundled", "(none)", "", 0.7, 0.9, 50, 64,
                                   1.1, -1, fmt="md"))
    assert not stale.exists() and recent.is_dir()
    assert exported.parent.parent == tmp_path / "convo-exports" and "Hi" in exported.read_text()
    csv_path, json_path = questions_ui.write_downloads([], "A passage.")
    assert Path(csv_path).parent.parent == tmp_path / "convo-exports" and Path(json_path).read_text() == "[]"


def test_operators_are_listed_hub_users_or_a_page_unlocked_with_the_key(monkeypatch):
    from types import SimpleNamespace

    from convo.ui.common import is_operator, operator_key_matches

    alice, bob = SimpleNamespace(username="alice"), SimpleNamespace(username="bob")
    monkeypatch.delenv("CONVO_OPERATORS", raising=False)
    monkeypatch.delenv("CONVO_OPERATOR_KEY", raising=False)
    assert not is_operator(False, alice) and not is_operator(False, None)  # nothing set: nobody
    assert not operator_key_matches("") and not operator_key_matches("anything")
    monkeypatch.setenv("CONVO_OPERATORS", "alice, carol")
    assert is_operator(False, alice) and not is_operator(False, bob) and not is_operator(False, None)
    monkeypatch.setenv("CONVO_OPERATOR_KEY", "s3cret-key")
    assert operator_key_matches("s3cret-key") and not operator_key_matches("s3cret") and not operator_key_matches(None)
    assert is_operator(True, None)  # a page unlocked with the key


def test_the_operator_key_never_reaches_a_training_job(monkeypatch, tmp_path):
    from convo.finetune import FinetuneConfig
    from convo.jobs import child_environment

    config = FinetuneConfig(train_data=str(tmp_path / "t.json"), output_dir=str(tmp_path / "out"), model_name="m")
    env = child_environment(config, {"CONVO_OPERATOR_KEY": "k", "PATH": "/bin"})
    assert "CONVO_OPERATOR_KEY" not in env and env["PATH"] == "/bin"


def test_adapter_menu_shows_names_and_resolves_them_on_the_server(data_dir):
    from convo.ui.common import adapter_choices, adapter_label, adapters_dir, spec_from

    folder = adapters_dir() / "my-adapter"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    assert adapter_choices() == ["(none)", "my-adapter"]
    assert spec_from("bundled", "my-adapter").adapter == str(folder)
    assert adapter_label(str(folder)) == "my-adapter" and adapter_label("org/hub-adapter") == "org/hub-adapter"
    with pytest.raises(ValueError):
        spec_from("bundled", "../my-adapter")


def test_a_message_sent_twice_is_one_message_only_when_no_reply_came_between():
    """A double-click's two clicks read the same chat: the second is dropped (it was answered twice).
    The same text after its reply is a new message (a quick second "yes"; the concurrency benchmark
    sends the same messages run after run, which the first form of this check dropped)."""
    from types import SimpleNamespace

    import gradio as gr

    from convo.ui import chat as chat_ui
    from convo.ui.replies import _sessions

    request = SimpleNamespace(session_hash=f"twice-{time.time_ns()}")
    before = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! Coffee?"}]
    box, shown = chat_ui.add_user_message("yes", before, request)
    assert (box, shown) == ("", before + [{"role": "user", "content": "yes"}])
    for stale in (before, shown):  # the second click read the chat before, or after, the first's message
        assert chat_ui.add_user_message("yes", stale, request)[1] == gr.skip()
    answered = shown + [{"role": "assistant", "content": "With milk?"}]
    assert chat_ui.add_user_message("yes", answered, request)[1] == answered + [{"role": "user", "content": "yes"}]
    assert _sessions.pop(request.session_hash).pending == ["yes", "yes"]
    assert chat_ui.add_user_message("   ", answered, request) == ("", gr.skip())  # an empty Send changes nothing


def test_a_cut_off_reply_reopens_saying_so_until_undo_changes_the_chat(tmp_path, monkeypatch):
    """A reply cut off (the page left mid-reply) reopens with the status saying so; Undo rewrites the
    conversation without it, and it no longer says so (the mark outlived Undo)."""
    from convo import chat
    from convo.store import Store
    from convo.ui import chat as chat_ui

    with Store(tmp_path / "s.sqlite3") as store:
        monkeypatch.setattr(chat_ui, "get_store", lambda: store)
        history = [{"role": "user", "content": "Tell me a story."}]
        saver = chat.TurnSaver(store, history, model="m")
        cid = saver.start()
        saver.partial("Once upon", now=True)
        reopened = chat_ui.reopen({"id": cid})
        assert reopened[0] == history + [{"role": "assistant", "content": "Once upon"}] and reopened[-1] == chat_ui.LEFT
        chat_ui.resave(cid, history)  # Undo took the cut reply away
        assert chat_ui.reopen({"id": cid})[-1] == ""
        assert store.load_conversation(cid).settings == {}
