"""HTTP alone: no Gradio, the same story streamed with the same protocol by a bare Starlette app.

    python benchmarks/http_floor.py   (serves on $GRADIO_SERVER_PORT; concurrency.py launches it)

concurrency.py runs its users against this server after ``gradio_floor.py``: the same page client
posts each message to ``queue/join`` on its keep-alive connection and reads the session's event
stream (``queue/data``), applying the streamed diffs; the server is uvicorn with the app's event
loop and HTTP parser (uvloop, httptools) and a Starlette app of two routes. A message's reply is
``gradio_floor.py``'s story (its first word at once, a word every 4 ms, updates no more often than
the chat's ``redraw_interval``), made on the event loop. What its users wait for is HTTP, the
event streams and the clients' own work on the cores they share, without Gradio's queue: the
difference from ``gradio_floor.py`` is what Gradio's serving costs each message.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from convo.ui.chat import _counted_stream  # noqa: E402
from gradio_floor import WORD_EVERY_S, story  # noqa: E402

JOIN, STREAM = "/queue/join", "/queue/data"
_sessions: dict[str, asyncio.Queue] = {}
_tasks: set[asyncio.Task] = set()


class Endpoint:
    """What ``concurrency.PageUser`` reads of a gradio_client endpoint, for this server."""

    parameters_info = None  # (the arguments are sent as given)
    fn_index = 0

    def __init__(self, url: str):
        self.client = type("Urls", (), {"sse_data_url": url.rstrip("/") + JOIN, "sse_url": url.rstrip("/") + STREAM})

    @staticmethod
    def insert_empty_state(*args):
        return args


def _session(session_hash: str) -> asyncio.Queue:
    return _sessions.setdefault(session_hash, asyncio.Queue())


async def _story(messages: asyncio.Queue, event_id: str, history: list, words: int) -> None:
    """The reply: ``words`` words of ``gradio_floor.story``, an update where the chat would show one."""
    def update(kind: str, value: list, first: bool) -> dict:
        data = [value] if first or kind == "process_completed" else [[["replace", [], value]]]
        return {"msg": kind, "event_id": event_id, "output": {"data": data}, "success": True}

    with _counted_stream():
        text = ""
        for i, (text, shown) in enumerate(story(words)):
            if shown:  # (the first word always is: its update carries the whole value, the later ones diffs)
                await messages.put(update("process_generating", history + [{"role": "assistant", "content": text}],
                                          i == 0))
            await asyncio.sleep(WORD_EVERY_S)
        await messages.put(update("process_completed", history + [{"role": "assistant", "content": text}], False))


async def join(request: Request) -> JSONResponse:
    body = await request.json()
    event_id = uuid.uuid4().hex
    history, max_new_tokens = body["data"][0], body["data"][10]
    task = asyncio.get_running_loop().create_task(
        _story(_session(body["session_hash"]), event_id, history, int(max_new_tokens or 64)))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return JSONResponse({"event_id": event_id})


async def stream(request: Request) -> StreamingResponse:
    messages = _session(request.query_params["session_hash"])

    async def events():
        while True:
            message = await messages.get()
            yield f"data: {json.dumps(message)}\n\n"
            if message["msg"] == "process_completed" and messages.empty():
                return

    return StreamingResponse(events(), media_type="text/event-stream")


async def ready(request: Request) -> JSONResponse:  # (common.App waits for /config to answer)
    return JSONResponse({"floor": "http"})


app = Starlette(routes=[Route(JOIN, join, methods=["POST"]), Route(STREAM, stream), Route("/config", ready)])

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["GRADIO_SERVER_PORT"]), log_level="warning",
                loop="uvloop", http="httptools")
