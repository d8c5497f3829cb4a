"""Each browser session's chat reply loop (see ``chat.respond``), where Share and Export also look:
they wait for the reply being written."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import gradio as gr

from ..engine.generation import Stop


@dataclass
class Turns:
    """One browser session's reply loop: whether a reply is being written, the messages sent
    meanwhile (answered in order by the running loop), and the Stop flag of the current reply."""

    busy: bool = False
    pending: list[str] = field(default_factory=list)
    stop: Stop | None = None
    cleared: bool = False  # Clear ran mid-loop: the turn ends unseen, later messages start anew
    writing: bool = False  # a reply streams now (not its follow-up questions)


# Keyed by Gradio session; the Stop button of a session ends that session's reply within a token or two.
_sessions: dict[str, Turns] = {}
_sessions_lock = threading.Lock()


def _session(request) -> str:
    return request.session_hash if request else "local"


def replying(request: gr.Request | None) -> bool:
    """Whether this session's reply loop is writing a reply, or is running with messages queued for one
    (its follow-up questions change nothing in the conversation; messages left queued when the loop
    ended on a server's error wait for the next Send, and the chat shows them as they are)."""
    with _sessions_lock:
        turns = _sessions.get(_session(request))
        return bool(turns and (turns.writing or turns.busy and turns.pending))
