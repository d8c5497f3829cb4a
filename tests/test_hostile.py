"""Hostile and odd input against the launched app over HTTP (issue 18): uploads that once froze the
server or were silently misread, storage limits, kill -9 mid-reply, and a canary token that must
end up nowhere.

The corpus is generated here (no binaries committed). Each upload goes through the Fine-tune
tab's report endpoint while a second thread asks for ``/config`` and samples the server's memory.
Run: python -m pytest tests/test_hostile.py -q
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from convo.data import UNRECOGNISED

GOOD_CHAT = {"messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How are you?"}]}
KNOBS = dict(system_prompt="You are brief.", curious=False, interviewer=False, temperature=0, top_p=0.9, top_k=50,
             max_new_tokens=12, repetition_penalty=1.0, seed=-1)


def chat_line(i: int = 0) -> str:
    return json.dumps({"messages": [{"role": "user", "content": f"Hi {i}"}, {"role": "assistant", "content": "Hello"}]})


def simple(n: int, question=lambda i: f"What did cat {i} do?") -> list:
    return [{"context": f"Story {i}: the cat sat on mat {i}.", "questions": [question(i)], "answers": ["sat"]}
            for i in range(n)]


def dump(value) -> bytes:
    return json.dumps(value).encode()


def corpus() -> list[tuple[str, bytes, str]]:
    """(file name, content, text the report must contain): 46 hostile or odd uploads."""
    unrecognised = UNRECOGNISED[-80:]  # the end of the "unrecognised format" message, before what was found
    coqa_simple = dump(simple(3))
    return [
        # what froze the server: a quote and escaped quotes (quadratic regex), then at 4 MB
        ("quotes.json", b'"' + b'\\"' * 40_000, "invalid JSON at line 1"),
        ("quotes-4mb.json", b'"' + b'\\"' * 2_000_000, "invalid JSON at line 1"),
        ("open-brackets.json", b"[" * 100_000, "nested deeper than 32 levels"),
        ("deep-balanced.json", b"[" * 5_000 + b"]" * 5_000, "nested deeper than 32 levels"),
        ("deep-object.json", b'{"a":' * 3_000 + b"1" + b"}" * 3_000, "nested deeper than 32 levels"),
        ("deep-line.jsonl", f"{chat_line(1)}\n{'[' * 50_000}\n{chat_line(2)}\n".encode(),
         "line 2: JSON is nested deeper than 32 levels"),
        ("negative-then-deep.jsonl", f"{chat_line(1)}\n{']' * 40 + '[' * 5_000}\n{chat_line(2)}\n".encode(),
         "line 2: JSON is nested deeper than 32 levels"),
        # memory: one huge chat line, many records, many tiny values
        ("one-line-15mb.jsonl", json.dumps({"messages": [{"role": "user", "content": "word " * 3_000_000},
                                                          {"role": "assistant", "content": "ok"}]}).encode(),
         "ready to train"),
        ("20k-records.json", dump(simple(20_000)), "ready to train"),
        ("empty-lists-12mb.json", b"[" + b"[]," * 4_000_000 + b"[]]", "over the limit of 2,000,000 per upload"),
        ("strings-14mb.json", b"[" + b'"ab",' * 2_800_000 + b'"a"]', "over the limit of 2,000,000 per upload"),
        ("over-work-cap.json", dump([{"context": "c", "questions": ["Who is it?"]}] * 75_001),
         "over the limit of 150,000 per upload"),
        ("long-passage.json", dump([{"context": "Long.", "questions": [f"Question {i}?" for i in range(1_001)]},
                                    {"context": "Short.", "questions": ["Why?"]}]),
         "[0]: 1,001 questions in one passage, over the limit of 1,000"),
        ("huge-int.json", b"1" * 100_000, "a value Python cannot read"),
        ("huge-int-inside.json", b'[{"context": "x", "questions": [' + b"7" * 5_000 + b"]}]", "a value Python cannot read"),
        # text that is not what it claims
        ("surrogate.jsonl", (chat_line(1) + "\n" + chat_line(2).replace("Hello", "Hel\\ud800lo") + "\n").encode(),
         "line 2, messages[1].content: holds a lone surrogate (\\ud800)"),
        ("surrogate-context.json", b'[{"context": "\\udfff", "questions": ["Who?"]}]', "lone surrogate (\\udfff)"),
        ("utf16le.json", b"\xff\xfe" + coqa_simple.decode().encode("utf-16-le"), "simplified CoQA, ready to train"),
        ("utf16be.json", b"\xfe\xff" + coqa_simple.decode().encode("utf-16-be"), "simplified CoQA, ready to train"),
        ("utf32.json", coqa_simple.decode().encode("utf-32"), "simplified CoQA, ready to train"),
        ("utf16-odd.json", b"\xff\xfe" + b"[\x00{\x00}\x00]", "UTF-16-LE byte-order mark but is not valid"),
        ("latin1.json", json.dumps(simple(1), ensure_ascii=False).replace("cat", "café").encode("latin-1"),
         "not UTF-8 text (invalid byte 0xe9"),
        ("binary.json", bytes(range(256)) * 100, "looks binary"),
        ("duplicate-keys.json", b'[{"context": "A cat.", "questions": ["Who?"], "context": "B"},'
                                b' {"context": "Dogs.", "questions": ["Who barks?"]}]', 'repeats the key "context"'),
        ("broken-coqa.json", dump({"version": "1.0", "data": [
            {"id": str(i), "story": f"Story {i} about a cat.", "questions": [{"turn_id": 1, "input_text": "a"}],
             "answers": [{"turn_id": 1, "input_text": "b"}]} for i in range(40)]}), "most questions are not questions"),
        ("punctuation-questions.json", dump(simple(10, lambda i: "?!" if i % 2 else "...")),
         "most questions are not questions"),
        ("some-non-questions.json", dump(simple(10) + simple(2, lambda i: "x")), "not a question: \"x\""),
        # what was found, named
        ("null.json", b"null", f"{unrecognised}; found null"),
        ("number.json", b"42", f'{unrecognised}; found a number ("42")'),
        ("string.json", b'"hello"', f'{unrecognised}; found a string ("hello")'),
        ("bool.json", b"true", f"{unrecognised}; found true"),
        ("numbers.json", b"[1, 2, 3]", f"{unrecognised}; found a JSON list of numbers"),
        ("strings.json", b'["a", "b"]', f"{unrecognised}; found a JSON list of strings"),
        ("lists.json", b"[[1], [2]]", f"{unrecognised}; found a JSON list of lists"),
        ("empty-object.json", b"{}", f"{unrecognised}; found an empty object"),
        ("data-of-titles.json", dump({"data": [{"title": "x"}]}), 'whose records are objects (the first has keys "title")'),
        ("big-key.json", dump({"k" * 1_000_000: 1}), f"{unrecognised}; found an object with keys"),
        ("script-key.json", dump([{"<script>alert(1)</script>": 1}]), "found a JSON list of objects"),
        ("nan.json", b'[{"context": NaN, "questions": ["Why?"]}]', "[0].context: expected a string, got float"),
        ("jsonl-of-numbers.jsonl", b'{"a": 1}\n{"b": 2}\n3\n', "found JSON Lines whose first line is an object"),
        # plain old faults, still named by record and field
        ("empty.json", b"", "file is empty"),
        ("bom-only.json", b"\xef\xbb\xbf  \n", "file is empty"),
        ("truncated.json", b'[{"context": "x", "questions": ["a', "invalid JSON at line 1"),
        ("bad-role.jsonl", f"{chat_line(1)}\n{chat_line(2).replace('assistant', 'bot')}\n{chat_line(3)}\n".encode(),
         'line 2, messages[1].role: expected "system", "user" or "assistant", got "bot"'),
        ("many-faults.json", dump(simple(5) + [{"context": "x", "questions": [i]} for i in range(2_000)]),
         "more"),
        # the flat layout of earlier question-generation scripts
        ("flat.json", dump({"data": [{"context": "Cats purr.", "question": "Who purrs?", "answer": "Cats"},
                                     {"context": "Dogs bark.", "question": "Who barks?", "answer": "Dogs"},
                                     {"context": "Cats purr.", "question": "What do cats do?", "answer": "Purr"}]}),
         "flat QA, ready to train"),
    ]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Watch(threading.Thread):
    """Asks for /config every 0.2 s (slowest answer per window) and samples the server's RSS."""

    def __init__(self, url: str, pid: int):
        super().__init__(daemon=True)
        self.url, self.pid = url, pid
        self.running = True
        self.reset()

    def reset(self) -> None:
        self.slowest, self.peak = 0.0, rss_mb(self.pid)

    def run(self) -> None:
        while self.running:
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url + "config", timeout=10) as response:
                    response.read()
                self.slowest = max(self.slowest, time.monotonic() - started)
            except OSError:
                self.slowest = max(self.slowest, 10.0)
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.2)


@pytest.fixture(scope="module")
def app(launch_shared, tiny_causal):
    return launch_shared(model=tiny_causal)


def test_corpus_of_hostile_uploads_is_answered_fast_with_bounded_memory(app, tiny_causal, tmp_path):
    files = corpus()
    assert len(files) >= 40
    client = Client(app.url, verbose=False)
    watch = Watch(app.url, app.proc.pid)
    watch.start()
    failures = []
    try:
        for name, content, expected in files:
            path = tmp_path / name
            path.write_bytes(content)
            watch.reset()
            before = watch.peak
            started = time.monotonic()
            report = client.predict(handle_file(str(path)), None, None, 512, tiny_causal, "(none)", "auto",
                                    api_name="/finetune_inspect")[0]
            elapsed = time.monotonic() - started
            time.sleep(0.25)  # one more /config round while the server settles
            growth = watch.peak - before
            problems = []
            if expected not in report:
                problems.append(f"report lacks {expected!r}: {report[:400]!r}")
            if elapsed > 5:
                problems.append(f"took {elapsed:.1f} s")
            if growth > 300:
                problems.append(f"server memory grew {growth:.0f} MB")
            if watch.slowest > 1:
                problems.append(f"/config waited {watch.slowest:.2f} s")
            if problems:
                failures.append(f"{name} ({len(content):,} bytes): " + "; ".join(problems))
            path.unlink()
    finally:
        watch.running = False
    assert not failures, "\n".join(failures)


def test_flat_layout_is_read_with_passage_and_question_counts(app, tiny_causal, tmp_path):
    records = [{"context": f"Passage {i % 3} is about cats.", "question": f"What is question {i}?", "answer": "cats"}
               for i in range(7)]
    path = tmp_path / "flat.json"
    path.write_text(json.dumps({"data": records}))
    report = Client(app.url, verbose=False).predict(handle_file(str(path)), None, None, 512, tiny_causal,
                                                    "(none)", "auto", api_name="/finetune_inspect")[0]
    assert "flat QA, ready to train, 7 examples" in report
    assert "| records | 7 |" in report and "| passages | 3 |" in report and "| questions | 7 |" in report


def test_load_model_refuses_every_path_with_the_same_message(app, tiny_causal):
    client = Client(app.url, verbose=False)
    statuses = {}
    for path in ("/etc", "/nonexistent", "/etc/passwd", "../../..", "~", str(Path(tiny_causal).parent)):
        model, _, _, status = client.predict(path, "(none)", "auto", api_name="/load_model")
        assert model == tiny_causal  # the model in use stays
        statuses[path] = status.splitlines()[0].replace(f"'{path}'", "'<path>'")
    assert len(set(statuses.values())) == 1, statuses
    assert "is not a model this app may load" in next(iter(statuses.values()))
    _, _, _, status = client.predict(tiny_causal, "/etc", "auto", api_name="/load_model")
    assert "'/etc' is not a model this app may load" in status


def share(client, history, model):
    knobs = list(KNOBS.values())
    return client.predict([{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in history],
                          model, "(none)", knobs[0], *knobs[3:], 0, api_name="/share")


def test_share_over_the_size_cap_or_the_rate_is_refused(app, tiny_causal):
    client = Client(app.url, verbose=False)
    with pytest.raises(Exception, match=r"Could not share: messages\[1\] is 100,001 characters long, over the limit "
                                        r"of 100,000 characters per message"):
        share(client, [{"role": "user", "content": "x" * 100_001}], tiny_causal)
    small = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    made = 0
    with pytest.raises(Exception, match=r"Could not share: too many shares: 30 an hour at most; try again in"):
        for _ in range(31):
            share(client, small, tiny_causal)
            made += 1
    assert made == 30
    with sqlite3.connect(app.data_dir / "convo.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM shares").fetchone()[0] == 30


def reply_text(outputs) -> str | None:
    """The assistant's text in the latest /chat output, or None before it shows."""
    if not outputs:
        return None
    last = outputs[-1]
    history = last if last and isinstance(last[0], dict) else last[0]
    if len(history) < 2:
        return None
    return "".join(p["text"] for p in history[1]["content"] if p.get("type") == "text")


def test_kill_9_mid_reply_keeps_the_message_and_the_streamed_part(launch, slow_tiny, tmp_path_factory):
    """kill -9 while a reply streams: after a restart on the same data, the user's message and the
    reply as shown up to a bounded lag are in the conversation. The reply cannot end early: the
    tiny model's end tokens have logit 0 and top-k 40 keeps only positive ones, so it runs to 1,024
    tokens (seconds, even on the transformers path of an idle machine) and the kill lands mid-reply."""
    data = tmp_path_factory.mktemp("kill9-data")
    every_s = 0.5
    app = launch(model=slow_tiny, data_dir=data, CONVO_FAST="0", CONVO_SAVE_EVERY_S=str(every_s))
    client = Client(app.url, verbose=False)
    knobs = {**KNOBS, "temperature": 1.0, "top_p": 1.0, "top_k": 40, "max_new_tokens": 1024, "seed": 2}
    job = client.submit([{"role": "user", "content": [{"type": "text", "text": "Tell me everything."}]}], slow_tiny,
                        "(none)", "auto", *knobs.values(), api_name="/chat")
    seen: list[tuple[float, str]] = []  # (when, reply text shown)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not job.done():
        text = reply_text(job.outputs())
        if text and (not seen or text != seen[-1][1]):
            seen.append((time.monotonic(), text))
        if seen and time.monotonic() - seen[0][0] > every_s + 1.5:
            break
        time.sleep(0.02)
    assert seen, f"no part of the reply streamed: {job.status()} {job.outputs()[-1:]} {app.output()[-2000:]}"
    assert not job.done(), "the reply ended before the kill: nothing was in flight"
    os.kill(app.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    app.proc.wait(10)
    restarted = launch(model=slow_tiny, data_dir=data)
    with sqlite3.connect(restarted.data_dir / "convo.sqlite3") as db:
        rows = [json.loads(row[0]) for row in db.execute("SELECT messages FROM conversations")]
    assert len(rows) == 1
    messages = rows[0]
    assert messages[0] == {"role": "user", "content": "Tell me everything."}
    assert len(messages) == 2 and messages[1]["role"] == "assistant"
    saved, last = messages[1]["content"], seen[-1][1]
    assert saved and (last.startswith(saved) or saved.startswith(last)), (saved[:80], last[:80])
    # What was shown a save interval (plus a second of slack) before the kill is saved.
    due = [text for when, text in seen if when <= killed - every_s - 1.0]
    assert due, f"the kill came too soon after the first text: {[round(w - killed, 2) for w, _ in seen]}"
    assert saved.startswith(due[-1]), (len(saved), len(due[-1]), len(last))


CANARY = "hf_canaryTYPEDtoken0123456789"
ENV_CANARY = "hf_canaryENVtoken9876543210"


def found_in_files(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits += [f"{path} holds {n!r}" for n in needles if n in data]
    return hits


@pytest.mark.browser
@pytest.mark.timeout(600)
def test_a_typed_token_ends_up_nowhere(chromium, launch, tiny_causal, tmp_path_factory, monkeypatch):
    """A canary token typed into both Push boxes, and another in the app's HF_TOKEN, are found in 0
    places: files under the data dir, Gradio's temp dir and the Hub cache, the app log, SQLite, the job
    folder, the training child's environment, and the browser's localStorage/sessionStorage."""
    from hub_server import serve_fake_hub
    from test_browser import set_number

    root = tmp_path_factory.mktemp("canary")
    hub = serve_fake_hub(monkeypatch, root, {CANARY: "alice", ENV_CANARY: "alice"})
    try:
        temp = root / "gradio-temp"
        app = launch(model=tiny_causal, data_dir=root / "data", GRADIO_TEMP_DIR=str(temp), HF_TOKEN=ENV_CANARY)
        context = chromium.new_context()
        page = context.new_page()
        page.goto(app.url)
        page.wait_for_selector("#chat-input textarea", timeout=60_000)

        # Fine-tune: train 2 steps; while the child runs, read its environment.
        page.get_by_role("tab", name="Fine-tune").click()
        page.locator("#ft-upload input[type=file]").set_input_files(str(Path(__file__).parent / "data" / "good" / "coqa.json"))
        page.wait_for_function("() => /ready to train/.test(document.querySelector('#ft-report').innerText)", timeout=60_000)
        page.get_by_text("Training settings").click()
        page.locator("#ft-name input, #ft-name textarea").first.fill("canary-adapter")
        set_number(page, "#ft-max-steps input", 2)
        page.locator("#ft-start").click()
        environ = None
        deadline = time.monotonic() + 120
        while environ is None and time.monotonic() < deadline:
            for status in (root / "data" / "jobs").glob("*/status.json"):
                pid = json.loads(status.read_text()).get("pid")
                if pid:
                    try:
                        environ = Path(f"/proc/{pid}/environ").read_bytes()
                    except OSError:
                        pass
            time.sleep(0.05)
        assert environ, "the training child was not seen running"
        assert b"HF_ENDPOINT=" in environ  # the real environment, read while the job ran
        assert ENV_CANARY.encode() not in environ and b"HF_TOKEN=" not in environ
        page.wait_for_function("() => /Finished/.test(document.querySelector('#ft-status').innerText)", timeout=300_000)
        page.get_by_text("Push the adapter to the Hugging Face Hub").click()
        page.locator("#ft-push-repo input, #ft-push-repo textarea").first.fill("alice/canary-adapter")
        page.locator("#ft-push-token input").fill(CANARY)
        page.locator("#ft-push").click()
        page.wait_for_function("() => /Pushed to/.test(document.querySelector('#ft-push-status').innerText)", timeout=120_000)
        assert page.locator("#ft-push-token input").input_value() == ""
        assert "adapter_config.json" in hub.files("alice/canary-adapter")

        # Synthetic: a short run with the tiny model, then a push with the typed token.
        page.get_by_role("tab", name="Synthetic").click()
        page.locator("#synth-seeds textarea").fill("I just adopted a cat.")
        page.locator("#synth-run").click()
        page.wait_for_selector("#synth-progress [data-state=finished]", state="attached", timeout=300_000)
        page.get_by_text("Push to the Hugging Face Hub").click()
        page.locator("#synth-repo-id input, #synth-repo-id textarea").first.fill("alice/canary-data")
        page.locator("#synth-token input").fill(CANARY)
        page.locator("#synth-push").click()
        page.wait_for_function("() => /Pushed|Error/.test(document.querySelector('#synth-push-status').innerText)",
                               timeout=120_000)
        assert "Pushed" in page.locator("#synth-push-status").inner_text()
        assert page.locator("#synth-token input").input_value() == ""

        storage = page.evaluate("() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
        assert CANARY not in storage and ENV_CANARY not in storage
        page.reload()
        page.wait_for_selector("#chat-input textarea", timeout=60_000)
        storage = page.evaluate("() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
        assert CANARY not in storage
        context.close()
        assert found_in_files(root, [CANARY.encode(), ENV_CANARY.encode()]) == []
        assert CANARY not in app.output() and ENV_CANARY not in app.output()
        with sqlite3.connect(root / "data" / "convo.sqlite3") as db:
            dump_sql = "\n".join(db.iterdump())
        assert CANARY not in dump_sql
        with pytest.raises(urllib.error.HTTPError, match="404"):  # the run history page is off
            urllib.request.urlopen(app.url + "gradio_api/runs")
    finally:
        hub.stop()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_memory_stays_flat_over_100_streamed_chats(launch, tiny_causal):
    """100 streamed chats with curious follow-ups over HTTP, 8 at a time, each from a new visitor
    session (a new client): after 24 chats to warm up, the next 76 grow the app by under 64 MB.
    Measured on 2 cores: 67 MB (peak 90) before the fix (glibc kept a malloc arena per
    request thread, and Gradio kept each visitor session's copy of the page config, 0.4 MB, up to
    10,000 sessions; here capped at 32 so the cap is exercised), 31-47 MB after it. On an AMX Xeon
145 MB, 41 after ``fastpath.padded_rows`` (oneDNN kept a kernel per prompt length). What still grows,
    about 0.4-0.6 MB per new session, is not found yet (issue 18)."""
    import concurrent.futures

    app = launch(model=tiny_causal, CONVO_MAX_SESSIONS="32")

    def one(i):
        client = Client(app.url, verbose=False)
        message = f"Tell me story {i} about a {['cat', 'dog', 'fox', 'owl'][i % 4]} who lives in town {i * 7}."
        knobs = {**KNOBS, "curious": True, "temperature": 0.7, "max_new_tokens": 16, "seed": i}
        history = client.predict([{"role": "user", "content": [{"type": "text", "text": message}]}], tiny_causal,
                                 "(none)", "auto", *knobs.values(), api_name="/chat")[0]
        return reply_text([history])

    samples = []
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for start in range(0, 100, 8):
            try:
                replies = list(pool.map(one, range(start, min(100, start + 8))))
            except Exception as exc:
                raise AssertionError(f"chat {start}+ failed: {exc}\n{app.output()[-4000:]}") from exc
            assert all(replies), replies
            samples.append(rss_mb(app.proc.pid))
    warm, last = samples[2], samples[-1]  # after 24 chats, after 100
    assert last - warm < 64, f"RSS grew {last - warm:.0f} MB over 76 chats: {[round(x) for x in samples]}"


@pytest.mark.parametrize("name, content", [("deep.json", "[" * 100_000), ("int.json", "1" * 10_000),
                                           ("deep-line.jsonl", '"a"\n' + "[" * 5_000 + "]" * 5_000)])
def test_synthetic_tab_uploads_refuse_deep_or_unreadable_json_by_name(tmp_path, name, content):
    from convo import synth

    path = tmp_path / name
    path.write_text(content)
    for read in (synth.read_seeds, synth.load_keyword_config):
        with pytest.raises(synth.ConfigError, match=rf"^{name}(: JSON| line 2: invalid JSON)"):
            read(path)


def test_job_child_gets_hub_tokens_only_when_its_job_pushes(tmp_path):
    from convo.finetune import FinetuneConfig
    from convo.jobs import child_environment

    env = {"HF_TOKEN": ENV_CANARY, "HUGGING_FACE_HUB_TOKEN": ENV_CANARY, "PATH": "/usr/bin"}
    config = FinetuneConfig(train_data=str(tmp_path / "train.json"), output_dir=str(tmp_path / "out"))
    assert child_environment(config, env) == {"PATH": "/usr/bin"}
    pushing = FinetuneConfig(train_data=str(tmp_path / "train.json"), output_dir=str(tmp_path / "out"),
                             push_to_hub="alice/adapter")
    assert child_environment(pushing, env)["HF_TOKEN"] == ENV_CANARY
