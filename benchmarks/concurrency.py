"""Many users at once: launches the app on the bundled model and runs 1, 4 and 8 concurrent chat
users, printing aggregate tokens/s and the worst time to first token.

    python benchmarks/concurrency.py [--tokens 64] [--users 1 4 8] [--repeats 3] [--client page|gradio_client] [--fresh-sessions] [--new-messages] [--engine] [--no-floor]

Each user is one Gradio session, opened before the timed runs and kept for all of them, as a
browser keeps its page: a session's first message pays for opening it (Gradio builds every
component's config for the session, about 30 ms of the server's event loop for this app), and that
first message is the warm-up. The clock starts when the users send together and stops when the
last reply is complete; a user's first token is the first update whose reply has text. Each user
count runs ``--repeats`` times, one after another, and the ratios are of the medians: on 2 cores one
run's 1-user time to first token moved between 17 and 39 ms (Zen 4), which alone swung the TTFT ratio
from 2.8x to 6.4x. Every run sends the same messages, so after the warm-up each user's prompt is in
the engine's prefix cache (as a chat's earlier turns are) and its first token costs one decode row:
the times to first token measure serving a message (Gradio's queue and the handler), not a prefill.
``--new-messages`` makes every run's messages new text (a run number in each), so each first token
also pays for prefilling the message's new tokens, as a real user's new message does: then eight
users' first tokens need eight times one user's prefill compute.

The app's peak resident memory (``VmHWM``, model load included) is printed at the end.

Then the same users, runs and client go to ``benchmarks/gradio_floor.py`` (unless ``--no-floor``):
an app with the chat event's shape whose handler does no work (a fixed story, a word every 4 ms).
Its times to first token are what serving alone costs on this machine, the reference for the app's:
on a 2-core Zen 4 EPYC, 1 user 5-6 ms and 8 users 25-37 ms, 4.7-6.5x, where the target for convo's
app is 2x (benchmarks/README.md, twenty-sixth session).

Then (with the page client) the same runs go to ``benchmarks/http_floor.py``: the same story, protocol
and client against a bare Starlette app on the same uvicorn, without Gradio. On the same Zen 4:
1 user 1.3-1.7 ms and 8 users 5-7 ms, where Gradio alone took 4-8 and 25-40 ms (a Gradio app of one
input and one output, no chained event: 6-7 and 30-38 ms, 4.4-5.3x; twenty-seventh session).

``--engine`` leaves Gradio out: each user is a thread of this process that calls the chat's
``reply_stream`` (what the app's handler streams) on the bundled model, released together. Its
figures are the engine's share of the app's: with new messages, what eight users' first tokens cost
before any serving.

``--client page`` (the default) speaks Gradio's queue protocol as the page's JavaScript client does:
one keep-alive connection posts to ``queue/join`` and the session's event stream
(``queue/data``) is read as it arrives, applying the streamed diffs. ``--client gradio_client``
uses ``gradio_client``'s ``Job`` instead, which on the same cores adds its own costs to the
server's: a new HTTP client (and TLS context) for each message and for each stream, a reader that
looks for messages every 50 ms and a ``Job`` iterator that looks every 1 ms (measured here: about
1 s of the benchmark process's CPU time for 8 users' 64 tokens, on a 2-core machine where the
server's own run takes about 2.5 s). ``--fresh-sessions`` opens new sessions for every run, so
their cost lands inside the runs.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import threading
import time
import urllib.parse
import uuid

from common import App, machine

KNOBS = dict(system_prompt="You are a helpful assistant.", curious=False, interviewer=False, temperature=0.7,
             top_p=0.9, top_k=50, repetition_penalty=1.1, seed=1)
TOPICS = ["dragons", "bicycles", "the ocean", "volcanoes", "music", "chess", "bread", "the moon"]


def reply_text(conversation: list) -> str:
    """The text of the conversation's last message, when it is the assistant's (else "")."""
    if len(conversation) < 2 or conversation[-1].get("role") != "assistant":
        return ""
    content = conversation[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


class PageUser:
    """One user with the app open: a Gradio session that posts to the queue on a keep-alive
    connection and reads the session's event stream, as the browser page's client does."""

    def __init__(self, url: str, endpoint):
        from gradio_client.utils import apply_diff, construct_args

        self.apply_diff, self.construct_args = apply_diff, construct_args
        self.endpoint = endpoint
        client = endpoint.client
        self.join_path = urllib.parse.urlparse(client.sse_data_url).path
        self.stream_path = urllib.parse.urlparse(client.sse_url).path
        parts = urllib.parse.urlparse(url)
        self.address = (parts.hostname, parts.port)
        self.session = uuid.uuid4().hex[:11]
        self.conn = http.client.HTTPConnection(*self.address, timeout=600)

    def post(self, path: str, body: str) -> tuple[bytes, int]:
        """POST on the keep-alive connection, opening a new one when the server closed the old
        (uvicorn closes idle ones after 5 s), as a browser's connection pool does."""
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body, {"Content-Type": "application/json"})
                response = self.conn.getresponse()
                return response.read(), response.status
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.conn.close()
                self.conn = http.client.HTTPConnection(*self.address, timeout=600)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def chat(self, args: tuple, started: float) -> tuple[float | None, str]:
        args = self.construct_args(self.endpoint.parameters_info, args, {})  # the defaults of the rest, as gradio_client
        payload = {"data": list(self.endpoint.insert_empty_state(*args)), "fn_index": self.endpoint.fn_index,
                   "session_hash": self.session, "event_data": None, "trigger_id": None}
        body, status = self.post(self.join_path, json.dumps(payload))
        if status != 200:
            raise RuntimeError(f"queue/join answered {status}: {body[:200]!r}")
        event_id = json.loads(body)["event_id"]
        stream = http.client.HTTPConnection(*self.address, timeout=600)
        try:
            stream.request("GET", f"{self.stream_path}?session_hash={self.session}")
            events = stream.getresponse()
            values, first = None, None
            for line in events:
                if not line.startswith(b"data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") != event_id:
                    continue
                kind = message["msg"]
                if kind == "process_generating":
                    output = message["output"]["data"]
                    values = list(output) if values is None else [
                        self.apply_diff(value, diff) for value, diff in zip(values, output)]
                    if first is None and reply_text(values[0]):
                        first = time.perf_counter() - started
                elif kind == "process_completed":
                    if not message.get("success", True):
                        raise RuntimeError(f"the chat failed: {message.get('output')}")
                    return first, reply_text(message["output"]["data"][0])
            raise RuntimeError("the event stream ended before the reply was complete")
        finally:
            stream.close()


class ClientUser:
    """One user through ``gradio_client``'s ``Client.submit`` and ``Job`` iteration."""

    def __init__(self, url: str, endpoint):
        self.client = endpoint.client

    def chat(self, args: tuple, started: float) -> tuple[float | None, str]:
        job = self.client.submit(*args, api_name="/chat")
        first = None
        for update in job:  # the outputs: the conversation first, then the chat status and the chips
            if first is None and reply_text(update[0]):
                first = time.perf_counter() - started
        return first, reply_text(job.outputs()[-1][0])


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (Linux ``VmHWM``), in MB; NaN where unknown."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def connect(url: str, users: int, kind: str) -> list:
    """Open ``users`` sessions (a gradio_client ``Client`` each, which reads the app's API)."""
    from gradio_client import Client

    opened = []
    for _ in range(users):
        client = Client(url, verbose=False)
        endpoint = next(e for e in client.endpoints.values() if getattr(e, "api_name", None) == "/chat")
        opened.append((PageUser if kind == "page" else ClientUser)(url, endpoint))
    return opened


def message(topic: str, run_number: int | None) -> str:
    """A user's message: the same each run, or (with a run number) new text each run."""
    if run_number is None:
        return f"Tell me a long story about {topic}."
    return f"Story number {run_number}, please: tell me a long story about {topic}."


def one_user(user, text: str, tokens: int, results: list, barrier: threading.Barrier) -> None:
    history = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    args = (history, "bundled", "(none)", "auto", KNOBS["system_prompt"], False, False, KNOBS["temperature"],
            KNOBS["top_p"], KNOBS["top_k"], tokens, KNOBS["repetition_penalty"], KNOBS["seed"])
    barrier.wait()
    started = time.perf_counter()
    first, text = user.chat(args, started)
    results.append((first or time.perf_counter() - started, time.perf_counter() - started, text))


class EngineUser:
    """One user as the chat handler's stream in this process, without Gradio (``--engine``)."""

    def __init__(self, lm):
        self.lm = lm

    def chat(self, args: tuple, started: float) -> tuple[float | None, str]:
        from convo import chat
        from convo.ui.common import sampling_from

        history, system_prompt = args[0], args[4]
        text = history[-1]["content"][0]["text"]
        sampling = sampling_from(*args[7:13])
        first, reply = None, ""
        for reply in chat.reply_stream(self.lm, [{"role": "user", "content": text}],
                                       chat.ChatSettings(system_prompt=system_prompt), sampling):
            if first is None and reply:
                first = time.perf_counter() - started
        return first, reply


def run(users_: list, users: int, tokens: int, count_tokens, run_number: int | None = None,
        label: str = "", rates: bool = True) -> tuple[float, float]:
    results: list = []
    released: list[float] = []
    barrier = threading.Barrier(users, action=lambda: released.append(time.perf_counter()))
    threads = [threading.Thread(target=one_user, args=(users_[i], message(TOPICS[i % len(TOPICS)], run_number), tokens,
                                                       results, barrier))
               for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - released[0]
    if len(results) < users:
        raise RuntimeError(f"only {len(results)} of {users} users got a reply")
    total = sum(count_tokens(r[2]) for r in results)
    worst_ttft = max(r[0] for r in results)
    rate = f"{total / wall:7.1f} tok/s aggregate, " if rates else ""
    print(f"{label}{users} users: {rate}worst TTFT {worst_ttft * 1000:7.0f} ms, {total} tokens in {wall:.1f} s")
    return total / wall, worst_ttft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each user count (the ratios are of their medians)")
    parser.add_argument("--client", choices=["page", "gradio_client"], default="page",
                        help="how the users talk to the app (see the module's docstring)")
    parser.add_argument("--fresh-sessions", action="store_true",
                        help="new sessions for every run, the first message of each opening its session")
    parser.add_argument("--new-messages", action="store_true",
                        help="new message text every run, so each first token pays for its prefill")
    parser.add_argument("--engine", action="store_true",
                        help="no app: the chat's reply stream called from a thread per user, in this process")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the runs against benchmarks/gradio_floor.py and http_floor.py (the references)")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from convo.engine import bundled_model_dir

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir())
    print(machine())
    client = "none: the chat stream in-process (--engine)" if args.engine else args.client
    print(f"client: {client}{', fresh sessions for every run' if args.fresh_sessions else ''}"
          f"{', new messages every run' if args.new_messages else ', the same messages every run (cached prompts)'}")
    app = None
    if args.engine:
        from convo.engine import get_model

        lm = get_model("bundled")
        connect_users = lambda n, _kind: [EngineUser(lm) for _ in range(n)]  # noqa: E731
    else:
        app = App()
        print(f"app ready in {app.ready_s:.1f} s")
        connect_users = lambda n, kind: connect(app.url, n, kind)  # noqa: E731
    try:
        count = lambda t: len(tokenizer(t).input_ids)  # noqa: E731
        runs_of(connect_users, args, count)
        process = "this process" if app is None else "app"
        print(f"{process}'s peak resident memory (VmHWM, model load included): "
              f"{peak_rss_mb(os.getpid() if app is None else app.proc.pid):.0f} MB")
    finally:
        if app is not None:
            app.stop()
    if args.engine or args.no_floor:
        return
    floor = App(script="benchmarks/gradio_floor.py")
    print("Gradio alone (benchmarks/gradio_floor.py: the chat's event, a handler that does no work), the same runs:")
    try:
        runs_of(lambda n, kind: connect(floor.url, n, kind), args, lambda text: len(text.split()), "floor, ", rates=False)
    finally:
        floor.stop()
    if args.client != "page":
        return
    import http_floor

    bare = App(script="benchmarks/http_floor.py")
    print("HTTP alone (benchmarks/http_floor.py: the same story and protocol from a bare Starlette app), the same runs:")
    try:
        runs_of(lambda n, kind: [PageUser(bare.url, http_floor.Endpoint(bare.url)) for _ in range(n)], args,
                lambda text: len(text.split()), "http, ", rates=False)
    finally:
        bare.stop()


def runs_of(connect_users, args, count, label: str = "", rates: bool = True) -> None:
    """A warm-up, then ``args.repeats`` runs of each user count, printing their medians and their
    ratios to the first count's (the 1-user figures); without ``rates``, times to first token only."""
    users = connect_users(max(args.users), args.client)
    run(users, len(users), 8, count, label=f"{label}warm-up, ", rates=rates)  # model load, engine build, every user's session opened
    baseline = None
    run_number = 0
    for n in args.users:
        runs = []
        for _ in range(args.repeats):
            if args.fresh_sessions:
                users = connect_users(n, args.client)
            run_number += 1
            runs.append(run(users, n, args.tokens, count, run_number if args.new_messages else None, label, rates))
        rate, ttft = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        if args.repeats > 1:
            shown = f"{rate:7.1f} tok/s aggregate, " if rates else ""
            print(f"{label}{n} users, median of {args.repeats}: {shown}worst TTFT {ttft * 1000:7.0f} ms")
        if baseline is None:
            baseline = (rate, ttft)
        else:
            shown = f"{rate / baseline[0]:.2f}x aggregate tok/s, " if rates else ""
            print(f"   {label}vs 1 user: {shown}worst TTFT {ttft / baseline[1]:.2f}x")


if __name__ == "__main__":
    main()
