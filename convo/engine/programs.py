"""What every engine's ``pipeline`` shares: the Stop flag and multi-step generation programs.

A program is a generator that yields each step's prompts and is sent their replies; ``_advance``
steps it. The local engines (convo.engine.generation) and the remote one (convo.engine.remote) drive
programs the same way, so this module sits below both.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any


class Stop(threading.Event):
    """A flag a caller sets to end a generation within a token or two (the Stop button)."""


STEER = 4.0
"""Nats added to the logits of a Steered prompt's favoured first tokens (by default)."""


class Steered(str):
    """A program's prompt with wishes for its reply. It should name one of ``favour`` (e.g. a keyword
    conversation's word): the CPU engine raises the odds of the words' first tokens by ``bias`` nats
    until the reply has one of them, and feeds the rest of a word begun (elsewhere, the padded path or
    a server, the prompt is not steered). ``tokens``: at most this many new tokens instead of the
    sampling's (on the CPU engine and a server, which take each request on its own; the padded path
    keeps its batch's budget)."""

    favour: tuple[str, ...]
    bias: float
    tokens: int | None

    def __new__(cls, text: str, favour: tuple[str, ...] = (), bias: float = STEER, tokens: int | None = None):
        prompt = super().__new__(cls, text)
        prompt.favour, prompt.bias, prompt.tokens = tuple(favour), float(bias), tokens
        return prompt


def sampling_for(prompt: str, sampling):
    """``sampling`` with a Steered prompt's own token budget, if it has one."""
    tokens = getattr(prompt, "tokens", None)
    return sampling if not tokens else replace(sampling, max_new_tokens=tokens)


Program = Generator[list[str], list[str], Any]
"""A multi-step generation for ``pipeline``: yields each step's prompts, is sent their replies, returns its result."""


@dataclass
class Finished:
    """A ``pipeline`` program that returned: the key it was handed out with, and its result."""

    key: Any
    value: Any


@dataclass
class _Running:
    key: Any
    program: Program
    seed: int = 0
    """Offset of this program's seeds on the engine."""
    asked: int = 0
    prompts: list[str] = field(default_factory=list)
    requests: list = field(default_factory=list)
    pending: int = 0


def _advance(running: _Running, replies: list[str] | None) -> Finished | None:
    """Send a program its replies (None: start it) until it asks for prompts or returns."""
    while True:
        try:
            prompts = next(running.program) if replies is None else running.program.send(replies)
        except StopIteration as done:
            return Finished(running.key, done.value)
        if prompts:
            running.prompts = list(prompts)
            return None
        replies = []


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    r"""``text`` up to the earliest occurrence of any of the stop strings (all of it when none occurs):
    every engine's replies end there (``Sampling.stop``).

    >>> cut_at_stop("Clouds get heavy.\nSTUDENT: Why?", ["STUDENT:", "\n"])
    'Clouds get heavy.'
    """
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[:min(found)] if found else text


def finished_text(text: str, stops) -> str:
    """A reply's decoded text, cut before its first stop string, without the half of a character the
    token limit cut off (a byte-level tokenizer decodes it as U+FFFD: a comparison's reply ended in "🐦�").

    >>> finished_text("Birds! \\U0001F426\\ufffd", []), finished_text("Hi.\\nUSER: x", ["USER:"])
    ('Birds! 🐦', 'Hi.')
    """
    return cut_at_stop(text, stops).rstrip("\ufffd").strip()


def _stopped(stop: Stop | None) -> bool:
    return stop is not None and stop.is_set()


def drive_pipeline(source, width: int, stop: Stop | None, submit: Callable[[_Running], None],
                   one_ended: Callable[[], _Running],
                   replies_of: Callable[[_Running], list[str]]) -> Iterator[Finished]:
    """The loop of a pipeline whose requests end one by one (the CPU engine, a remote server): keep
    ``width`` programs running, ``submit`` each step's prompts, and when ``one_ended()`` (blocking) says
    which program a finished request belongs to, hand the program its ``replies_of`` once all are in."""
    serial = itertools.count()
    live = 0
    while True:
        while live < width and not _stopped(stop):
            handed = source()
            if handed is None:
                break
            running = _Running(*handed, seed=1009 * next(serial))
            finished = _advance(running, None)
            if finished is not None:
                yield finished
                continue
            submit(running)
            live += 1
        if live == 0 or _stopped(stop):
            return
        running = one_ended()
        if _stopped(stop):  # its reply may be cut short: never hand that to a program
            return
        running.pending -= 1
        if running.pending:
            continue
        finished = _advance(running, replies_of(running))
        if finished is None:
            submit(running)
            continue
        live -= 1
        yield finished
