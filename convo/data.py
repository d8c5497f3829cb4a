"""Readers and validators that turn an uploaded data file into training examples, with a report.

The format (official CoQA, simplified CoQA, SQuAD v1.1/v2.0, flat QA, chat JSONL) is detected from
the content; the report names every fault by location before anything trains.
Run: ``python -m convo.data FILE [--task qg|cqg|qa|qa_closed|chat]`` to print the report.

Decisions a caller should know:

* ``Report.ok`` is True when the file was read, at least one valid example remains for the task,
  and no whole-file error stopped it. Per-record ``faults`` are then *warnings*: the records (or
  SQuAD paragraphs, or chat lines) at fault are skipped and counted in ``Report.skipped``.
* A whole-file rejection (empty, too big, not UTF-8, binary, invalid JSON, too deep, unknown
  format) sets ``Report.error`` and leaves that one message as the only fault.
* Validation only reads: it writes no file, cache or temp file anywhere.
* Every check runs in time and memory linear in the file (one parse, linear scans), with hard caps
  on the work per file (``MAX_WORK``, ``MAX_TURNS``); token lengths are measured on a sample of at
  most ``TOKEN_SAMPLE`` examples, and the report says when they are an estimate.

Why one module (for now): readers, validators, report and task prompts of the training data; to be
split into convo/data/.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from itertools import accumulate
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

MB = 1_000_000
MAX_BYTES = 20_000_000
"""Default upload cap, in bytes (reported in MB of 1,000,000 bytes)."""
MAX_DEPTH = 32
"""Deepest JSON nesting accepted; every supported format needs 6 levels at most."""
FAULT_LIMIT = 200
"""How many faults a report keeps; the rest are counted in a closing ``... and N more faults``."""
SUMMARY_FAULTS = 20
"""How many faults ``Report.summary()`` shows."""
MAX_WORK = 100_000
"""Most records plus questions plus messages one file may hold (a hard cap on work per upload)."""
MAX_VALUES = 2_000_000
"""Most JSON strings, objects and lists one file may hold (bounds the memory of the parsed file)."""
MAX_TURNS = 1_000
"""Most questions one passage may have (conversational examples grow with the square of it)."""
TOKEN_SAMPLE = 2_000
"""Token lengths are measured on at most this many examples (a seeded sample), else estimated."""
MEASURE_CHARS = 40_000
"""An example longer than this is measured on its first ``MEASURE_CHARS`` characters only."""

ROLES = ("system", "user", "assistant")
FORMATS = ("coqa-simple", "coqa", "squad", "flat-qa", "chat-jsonl")
FORMAT_NAMES = {"coqa-simple": "simplified CoQA", "coqa": "CoQA", "squad": "SQuAD", "flat-qa": "flat QA",
                "chat-jsonl": "chat JSONL"}
TASKS = ("qg", "cqg", "qa", "qa_closed", "chat")
DEFAULT_TASKS = {"coqa-simple": "qg", "coqa": "qg", "squad": "qg", "flat-qa": "qg", "chat-jsonl": "chat"}
"""The task a report's token statistics use when the caller names none."""
NO_ANSWER = "unknown"
"""Answer target for unanswerable questions (SQuAD v2.0 ``is_impossible``), as CoQA writes it."""

# Prompt wording lives here, not inside functions: question generation at inference time builds
# its prompts with the same helpers, so a model is asked exactly what it was trained on.
QG_SYSTEM = (
    "You are a curious reader. Read the passage and ask one good question about it: "
    "a clear, specific question that the passage answers. Reply with the question only."
)
CQG_SYSTEM = (
    "You are a curious reader in a conversation about a passage. Given the passage and the "
    "questions and answers so far, ask the next question: one clear question that follows "
    "naturally from the conversation and that the passage answers. Reply with the question only."
)
QA_SYSTEM = (
    "Answer the question using the passage. Answer briefly, in a few words where possible. "
    f'If the passage does not contain the answer, reply "{NO_ANSWER}".'
)
QA_CLOSED_SYSTEM = (
    "Answer the question briefly, in a few words where possible. "
    f'If you do not know the answer, reply "{NO_ANSWER}".'
)
PASSAGE_PROMPT = "Passage:\n{context}"
CONVERSATION_PROMPT = "Passage:\n{context}\n\nConversation so far:\n{history}"
QUESTION_PROMPT = "Passage:\n{context}\n\nQuestion: {question}"
NO_HISTORY = "(no questions yet)"

UNRECOGNISED = (
    'unrecognised format: expected CoQA ({"data": [{"story", "questions", ...}]}), '
    'simplified CoQA ([{"context", "questions"}]), SQuAD ({"data": [{"paragraphs": ...}]}), '
    'flat QA ({"data": [{"context", "question", "answer"}]}) '
    'or chat JSONL ({"messages": [...]} per line)'
)
"""The start of every "unrecognised format" error; what was found follows it."""


@dataclass
class Turn:
    """One question of a passage and its answer (``None`` when the file gives no answers)."""

    question: str
    answer: str | None = None


@dataclass
class Passage:
    """A text with its questions, read from any of the QA formats.

    ``source`` says where in the file it came from (``data[3]``, ``[4]``,
    ``data[0].paragraphs[2]``) so reports can point at it.
    """

    context: str
    turns: list[Turn] = field(default_factory=list)
    source: str = ""


Message = dict[str, str]
Conversation = list[Message]
Data = Union[list[Passage], list[Conversation]]


@dataclass
class TokenStats:
    """Token lengths of the rendered training examples under one tokenizer."""

    count: int
    min: int
    mean: float
    p95: int
    max: int
    of: int = 0
    """How many examples there are when ``count`` is a sample of them (0: all were measured)."""
    clipped: int = 0
    """Examples over ``MEASURE_CHARS`` characters, measured on their start only (lengths are lower bounds)."""


@dataclass
class Report:
    """What a file holds and what is wrong with it; built by :func:`validate_file`.

    ``ok`` is True when at least one valid example remains and no whole-file error occurred;
    ``faults`` (``"<location>: <problem>"``) are then warnings about skipped records.
    """

    name: str = ""
    ok: bool = False
    format: str = ""
    """``coqa-simple``, ``coqa``, ``squad``, ``flat-qa`` or ``chat-jsonl``; empty when the file was rejected unread."""
    task: str = ""
    """The task the examples and token statistics were built for."""
    size: int = 0
    """File size in bytes."""
    sha256: str = ""
    """Hex digest of the file bytes (empty when the file was over the size cap and not read)."""
    records: int = 0
    """Top-level records: CoQA stories, simplified items, SQuAD articles, chat lines."""
    passages: int = 0
    questions: int = 0
    answers: int = 0
    """Questions that have an answer (SQuAD v2.0 impossible ones count, answered ``unknown``)."""
    conversations: int = 0
    messages: int = 0
    examples: int = 0
    """Training examples for ``task`` (identical examples are counted once)."""
    skipped: int = 0
    """Passages or conversations skipped because of faults."""
    duplicates: int = 0
    """Repeated records (skipped) plus repeated question/answer turns within a passage (kept)."""
    faults: list[str] = field(default_factory=list)
    """``"<location>: <problem>"`` lines, at most ``FAULT_LIMIT`` plus a closing count."""
    fault_count: int = 0
    """Every fault found, including any past ``FAULT_LIMIT``."""
    error: str | None = None
    """Why the file cannot be used at all; also the first entry of ``faults``."""
    token_stats: TokenStats | None = None
    max_length: int = 1024
    truncated: int = 0
    """Examples longer than ``max_length`` tokens; training would cut them (an estimate when
    ``token_stats.of`` says the lengths come from a sample)."""
    truncated_at: list[str] = field(default_factory=list)
    """Where the first few over-long examples come from."""

    def summary(self) -> str:
        """Markdown for a person: verdict, counts, token lengths and the first faults."""
        return "\n\n".join(part for part in (_verdict(self), _counts_table(self), _token_line(self), _fault_list(self)) if part)


class DataError(Exception):
    """A file that cannot be trained on; ``.report`` has the details, ``str()`` the reason."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__(report.error or (report.faults[0] if report.faults else "data file was rejected"))


# --------------------------------------------------------------------------- prompts


def qg_prompt(context: str) -> Conversation:
    """Messages asking for one question about ``context`` (no assistant turn yet)."""
    return [{"role": "system", "content": QG_SYSTEM}, {"role": "user", "content": PASSAGE_PROMPT.format(context=context)}]


def format_history(history: Sequence[Turn]) -> str:
    """Earlier turns as ``Q: ...`` / ``A: ...`` lines, or ``NO_HISTORY`` when there are none."""
    lines = []
    for turn in history:
        lines.append(f"Q: {turn.question}")
        if turn.answer is not None:
            lines.append(f"A: {turn.answer}")
    return "\n".join(lines) or NO_HISTORY


def cqg_prompt(context: str, history: Sequence[Turn] = ()) -> Conversation:
    """Messages asking for the next question of a conversation about ``context``.

    >>> cqg_prompt("Cats purr.", [Turn("Who purrs?", "Cats")])[1]["content"].splitlines()[-2:]
    ['Q: Who purrs?', 'A: Cats']
    """
    user = CONVERSATION_PROMPT.format(context=context, history=format_history(history))
    return [{"role": "system", "content": CQG_SYSTEM}, {"role": "user", "content": user}]


def qa_prompt(context: str, question: str) -> Conversation:
    """Messages asking to answer ``question`` from ``context``."""
    user = QUESTION_PROMPT.format(context=context, question=question)
    return [{"role": "system", "content": QA_SYSTEM}, {"role": "user", "content": user}]


def qa_closed_prompt(question: str) -> Conversation:
    """Messages asking to answer ``question`` with no passage (closed book)."""
    return [{"role": "system", "content": QA_CLOSED_SYSTEM}, {"role": "user", "content": question}]


# --------------------------------------------------------------------------- examples


def build_examples(data: Data, task: str) -> list[Conversation]:
    """Turn passages (or chat conversations) into training examples for ``task``.

    Each example is a conversation whose last message is the assistant target.
    Identical examples are kept once.

    >>> ex = build_examples([Passage("Cats purr.", [Turn("Who purrs?", "Cats")])], "qa")
    >>> [m["role"] for m in ex[0]], ex[0][-1]["content"]
    (['system', 'user', 'assistant'], 'Cats')
    """
    return [example for _, example in _examples_with_sources(data, task)]


def _examples_with_sources(data: Data, task: str, sources: Sequence[str] | None = None) -> list[tuple[str, Conversation]]:
    _check_task(task)
    conversations = task == "chat"
    for item in data:
        if isinstance(item, Passage) == conversations:
            wanted = "chat conversations" if conversations else "Passage objects"
            raise ValueError(f'task "{task}" needs {wanted}, got {type(item).__name__}')
    seen: set[tuple] = set()
    unique = []
    for source, example in _iter_examples(data, task, sources):
        key = tuple((message["role"], message["content"]) for message in example)
        if key not in seen:
            seen.add(key)
            unique.append((source, example))
    return unique


def _iter_examples(data: Data, task: str, sources: Sequence[str] | None) -> Iterator[tuple[str, Conversation]]:
    if task == "chat":
        for index, conversation in enumerate(data):
            example = _trim_to_last_assistant(conversation)
            if example:
                yield sources[index] if sources else f"conversation {index + 1}", example
        return
    for passage in data:
        for number, turn in enumerate(passage.turns):
            source = f"{passage.source} turn {number + 1}".strip()
            if task == "qg":
                yield source, qg_prompt(passage.context) + [_assistant(turn.question)]
            elif task == "cqg":
                yield source, cqg_prompt(passage.context, passage.turns[:number]) + [_assistant(turn.question)]
            elif turn.answer is not None and task == "qa":
                yield source, qa_prompt(passage.context, turn.question) + [_assistant(turn.answer)]
            elif turn.answer is not None and task == "qa_closed":
                yield source, qa_closed_prompt(turn.question) + [_assistant(turn.answer)]


def _assistant(content: str) -> Message:
    return {"role": "assistant", "content": content}


def _trim_to_last_assistant(conversation: Conversation) -> Conversation:
    # Messages after the last assistant turn carry no training target: drop them so the
    # example ends on what the model should say.
    last = max((i for i, m in enumerate(conversation) if m["role"] == "assistant"), default=-1)
    return [{"role": m["role"], "content": m["content"]} for m in conversation[: last + 1]]


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f'unknown task "{task}": expected one of {", ".join(TASKS)}')


def split_train_val(examples: Sequence[Any], val_fraction: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """Shuffle with ``seed`` and split off ``val_fraction`` of the examples for validation.

    At least one example goes to each side when there are two or more and ``val_fraction > 0``.

    >>> train, val = split_train_val(list(range(10)), 0.2)
    >>> len(train), len(val), sorted(train + val) == list(range(10))
    (8, 2, True)
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = round(len(order) * val_fraction)
    if val_fraction > 0 and len(order) >= 2:
        n_val = min(max(n_val, 1), len(order) - 1)
    val = [examples[i] for i in order[:n_val]]
    train = [examples[i] for i in order[n_val:]]
    return train, val


# --------------------------------------------------------------------------- public entry points


def validate_file(
    path: str | Path,
    *,
    task: str | None = None,
    tokenizer: Any = None,
    max_length: int = 1024,
    max_bytes: int = MAX_BYTES,
    adapt_task: bool = False,
) -> Report:
    """Read and check a data file; never raises for bad content (see ``Report.ok``).

    ``tokenizer`` may be a Hugging Face tokenizer, anything whose ``encode``/``__call__`` returns
    token ids, or a plain ``count_tokens(text) -> int``. ``task`` picks which examples the token
    statistics measure (default: ``qg`` for QA formats, ``chat`` for chat). With ``adapt_task`` a
    ``task`` that does not fit the file (chat on passages, a QA task on chats) is replaced by the
    format's default, so a caller needs one parse, not a probe first.
    """
    return _inspect_file(path, task, tokenizer, max_length, max_bytes, adapt_task)[0]


def validate_bytes(
    data: bytes,
    name: str,
    *,
    task: str | None = None,
    tokenizer: Any = None,
    max_length: int = 1024,
    max_bytes: int = MAX_BYTES,
) -> Report:
    """Like :func:`validate_file` for content already in memory; ``name`` labels the report."""
    return _inspect_bytes(data, name, task, tokenizer, max_length, max_bytes)[0]


def load_data(
    path: str | Path,
    *,
    task: str | None = None,
    tokenizer: Any = None,
    max_length: int = 1024,
    max_bytes: int = MAX_BYTES,
) -> tuple[Data, Report]:
    """Validated passages (QA formats) or conversations (chat) and the report.

    Raises :class:`DataError` when the file cannot be used.
    """
    report, data, _ = _inspect_file(path, task, tokenizer, max_length, max_bytes)
    if not report.ok:
        raise DataError(report)
    return data, report


def load_examples(
    path: str | Path,
    task: str,
    *,
    tokenizer: Any = None,
    max_length: int = 1024,
    max_bytes: int = MAX_BYTES,
) -> tuple[list[Conversation], Report]:
    """Training examples for ``task`` from a data file, and its report.

    Raises :class:`DataError` when the file is rejected or yields no example for ``task``.
    """
    _check_task(task)
    report, _, examples = _inspect_file(path, task, tokenizer, max_length, max_bytes)
    if not report.ok:
        raise DataError(report)
    return [example for _, example in examples], report


# --------------------------------------------------------------------------- the pipeline


class _Reject(Exception):
    """A whole-file problem: one message, no further reading."""


@dataclass
class _Parsed:
    format: str
    records: int = 0
    items: list = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    """Where each kept item starts in the file (``data[3]``, ``line 7``)."""
    turn_locations: list[list[str]] = field(default_factory=list)
    faults: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0


def _inspect_file(path, task, tokenizer, max_length, max_bytes, adapt_task=False):
    _check_limits(task, max_length, max_bytes)
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        # Refuse before reading: an accidental multi-GB upload must not fill memory.
        report = Report(name=path.name, size=size, max_length=max_length)
        return _rejected(report, _size_message(size, max_bytes)), [], []
    return _inspect_bytes(path.read_bytes(), path.name, task, tokenizer, max_length, max_bytes, adapt_task)


def _inspect_bytes(data: bytes, name: str, task, tokenizer, max_length, max_bytes, adapt_task=False):
    _check_limits(task, max_length, max_bytes)
    report = Report(name=_safe(name), size=len(data), max_length=max_length)
    if len(data) > max_bytes:
        return _rejected(report, _size_message(len(data), max_bytes)), [], []
    report.sha256 = hashlib.sha256(data).hexdigest()
    try:
        parsed = _parse(_decode(data))
    except _Reject as reject:
        return _rejected(report, str(reject)), [], []
    report.format = parsed.format
    if task and adapt_task and (task == "chat") != (parsed.format == "chat-jsonl"):
        task = None
    report.task = task or DEFAULT_TASKS[parsed.format]
    _count(report, parsed)
    broken = _flag_non_questions(parsed)
    faults = parsed.faults + _dedupe(parsed, report)
    error = _broken_questions_error(broken) or _usability_error(parsed, report.task, report.skipped)
    examples = [] if error else _examples_with_sources(parsed.items, report.task, parsed.sources)
    if not error and not examples:
        error = f'task "{report.task}" needs answers, but no question in this file has one'
    report.examples = len(examples)
    report.faults = _fault_lines(faults)
    report.fault_count = len(faults) + (error is not None)
    if error:
        return _rejected(report, error), [], []
    report.ok = True
    _measure(report, examples, tokenizer, max_length)
    return report, parsed.items, examples


def _check_limits(task, max_length, max_bytes) -> None:
    if task is not None:
        _check_task(task)
    if max_length < 1 or max_bytes < 1:
        raise ValueError(f"max_length and max_bytes must be positive, got {max_length} and {max_bytes}")


def _rejected(report: Report, error: str) -> Report:
    error = _safe(error)
    report.ok = False
    report.error = error
    report.faults = [error] + report.faults
    report.fault_count = max(report.fault_count, 1)
    return report


def _size_message(size: int, limit: int) -> str:
    # Show enough decimals that a file just over the cap does not read as "20.0 MB, over 20.0 MB".
    digits = 1
    while digits < 6 and f"{size / MB:.{digits}f}" == f"{limit / MB:.{digits}f}":
        digits += 1
    return f"file is {size / MB:.{digits}f} MB, over the {limit / MB:.{digits}f} MB limit"


# Byte-order marks, longest first: a UTF-32-LE mark starts like a UTF-16-LE one.
_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32-LE", "utf-32"), (b"\x00\x00\xfe\xff", "UTF-32-BE", "utf-32"),
         (b"\xff\xfe", "UTF-16-LE", "utf-16"), (b"\xfe\xff", "UTF-16-BE", "utf-16"))


def _decode(data: bytes) -> str:
    # Files saved as UTF-16/32 (Windows editors, PowerShell) carry a byte-order mark: read them.
    bom = next((entry for entry in _BOMS if data.startswith(entry[0])), None)
    if bom is not None:
        mark, name, codec = bom
        try:
            text = data.decode(codec)
        except UnicodeDecodeError as err:
            raise _Reject(f"file starts with a {name} byte-order mark but is not valid {name} text "
                          f"(at offset {err.start})") from None
        if not text.strip():
            raise _Reject("file is empty")
        return text
    if not data.removeprefix(b"\xef\xbb\xbf").strip():
        raise _Reject("file is empty")
    if b"\x00" in data:
        raise _Reject("file looks binary, not JSON text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Reject(f"file is not UTF-8 text (invalid byte 0x{data[err.start]:02x} at offset {err.start})") from None
    return text.removeprefix("\ufeff")  # Windows editors add a UTF-8 byte-order mark


# A string, or an unterminated one up to the end: possessive quantifiers never backtrack, and an
# unterminated string is consumed once, so the scan is linear (the old pattern retried from every
# quote of an unterminated run of escaped quotes: quadratic, seconds for 80 kB, GIL held).
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.S)
_NOT_BRACKET_BYTES = bytes(set(range(256)) - set(b"[]{}"))
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_CHUNK = 500_000


def json_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """Deepest bracket nesting in JSON text, found by scanning, without parsing.

    Stops counting once past ``limit``. Used before ``json.loads`` so a hostile file cannot
    drive the parser into its recursion limit.

    >>> json_depth('{"a": [[1], "]]]"]}')
    3
    """
    return _structure(text, limit)[0]


def _structure(text: str, limit: int = MAX_DEPTH, max_values: int | None = None) -> tuple[int, int]:
    """(deepest nesting, number of strings, objects and lists), by linear scans without parsing.
    Past ``max_values`` values the depth is not measured (the file is refused for its size anyway).

    The scans run on pieces of about ``_CHUNK`` characters, cut at line ends (a JSON string holds
    no raw line break), with a pause between pieces, so no single C call holds the GIL for long
    and other requests are served meanwhile."""
    if max_values is not None:
        # Quotes that are not escaped come in pairs: a cheap count refuses a file of millions of
        # strings before the regex scan, which holds the GIL for a whole line.
        quotes = text.count('"') - text.count('\\"') + text.count('\\\\"')
        if quotes // 2 > max_values:
            return 0, quotes // 2
    brackets, strings = [], 0
    for piece in _line_chunks(text):
        outside, count = _STRING.subn("", piece)
        strings += count
        brackets.append(outside.encode("utf-8", "surrogatepass").translate(None, _NOT_BRACKET_BYTES))
        time.sleep(0)
    joined = b"".join(brackets)
    del brackets
    values = strings + joined.count(b"[") + joined.count(b"{")
    if max_values is not None and values > max_values:
        return 0, values
    depth = deepest = 0
    # Running sums of +1/-1 steps computed in C (map, accumulate, max), chunk by chunk so other
    # threads get the GIL in between: about a second for a 20 MB file made only of brackets.
    for start in range(0, len(joined), _CHUNK):
        sums = list(accumulate(map(_STEP.__getitem__, joined[start : start + _CHUNK]), initial=depth))
        deepest = max(deepest, max(sums))
        depth = sums[-1]
        if deepest > limit:
            break
        time.sleep(0)
    return deepest, values


def _line_chunks(text: str) -> Iterator[str]:
    start = 0
    while start < len(text):
        end = text.find("\n", start + _CHUNK)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


class _Duplicates(dict):
    """A JSON object that repeated a key; ``repeated`` names the keys (the last value was kept)."""

    repeated: list[str]


def _object_from_pairs(pairs: list[tuple[str, Any]]) -> dict:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    seen: set[str] = set()
    marked = _Duplicates(value)
    marked.repeated = sorted({key for key, _ in pairs if key in seen or seen.add(key)})
    return marked


def _loads(text: str) -> Any:
    """``json.loads`` that notes repeated keys (see :class:`_Duplicates`)."""
    return json.loads(text, object_pairs_hook=_object_from_pairs)


def _parse(text: str) -> _Parsed:
    too_deep = f"JSON is nested deeper than {MAX_DEPTH} levels"
    depth, values = _structure(text, max_values=MAX_VALUES)
    if values > MAX_VALUES:
        raise _Reject(f"file holds {values:,} JSON strings, objects and lists, over the limit of {MAX_VALUES:,} "
                      "per upload: split it into smaller files")
    problem = too_deep if depth > MAX_DEPTH else None
    if problem is None:
        try:
            return _read_value(_loads(text))
        except RecursionError:  # brackets the scan could not see as nesting (unbalanced): still refused
            problem = too_deep
        except json.JSONDecodeError as err:
            problem = f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        except ValueError as err:  # e.g. an integer of more than 4300 digits
            raise _Reject(f"JSON holds a value Python cannot read: {err}") from None
    # Not one JSON document: JSON Lines, where each line is checked (depth included) on its own.
    lines = _jsonl_lines(text)
    if lines is None:
        raise _Reject(problem)
    if not any(isinstance(value, dict) and "messages" in value for _, value in lines):
        raise _Reject(f"{UNRECOGNISED}; found JSON Lines whose first line is {_describe(lines[0][1])}")
    _check_work(len(lines))
    return _read_chat_lines(lines)


class _LineFault(json.JSONDecodeError):
    """A JSONL line refused before parsing (too deep); reported like invalid JSON on that line."""

    def __init__(self, message: str):
        ValueError.__init__(self, message)
        self.msg, self.colno = message, 0


def _jsonl_lines(text: str) -> list[tuple[int, Any]] | None:
    """Parsed non-blank lines when the text reads as JSON Lines, else None.

    JSONL is assumed when the first non-blank line and most others are JSON objects on their
    own. A JSON file with a syntax error does not start that way: its first line is ``[`` or
    ``{`` or a first record that ends in a comma. Each line gets its own depth check.
    """
    lines = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            lines.append((number, _parse_line(line)))
    objects = sum(isinstance(value, dict) for _, value in lines)
    starts_with_object = bool(lines) and isinstance(lines[0][1], dict)
    return lines if starts_with_object and objects * 2 > len(lines) else None


def _parse_line(line: str) -> Any:
    if json_depth(line) > MAX_DEPTH:
        return _LineFault(f"JSON is nested deeper than {MAX_DEPTH} levels")
    try:
        return _loads(line)
    except RecursionError:
        return _LineFault(f"JSON is nested deeper than {MAX_DEPTH} levels")
    except json.JSONDecodeError as err:
        return err
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        return _LineFault(f"holds a value Python cannot read: {err}")


def _check_work(units: int) -> None:
    if units > MAX_WORK:
        raise _Reject(f"file holds {units:,} records, questions and messages, over the limit of {MAX_WORK:,} "
                      "per upload: split it into smaller files")


def _work(value: Any) -> int:
    """Records + questions + messages (an upper bound read from the lists' lengths), computed
    before any reading so an oversized file is refused before the per-record work."""
    if isinstance(value, dict):
        value = value.get("data") if isinstance(value.get("data"), list) else [value]
    if not isinstance(value, list):
        return 0
    units = len(value)
    for record in value:
        if isinstance(record, dict):
            for key in ("questions", "messages", "paragraphs", "answers"):
                inner = record.get(key)
                if isinstance(inner, list):
                    units += len(inner)
                    if key == "paragraphs":
                        units += sum(len(p.get("qas") or []) for p in inner if isinstance(p, dict)
                                     and isinstance(p.get("qas"), list))
    return units


def _read_value(value: Any) -> _Parsed:
    _check_work(_work(value))
    if isinstance(value, dict) and "messages" in value:
        return _read_chat_records([("line 1", value)])
    if isinstance(value, list):
        first = _first_object(value)
        if first is not None and "messages" in first:
            return _read_chat_records([(f"[{i}]", rec) for i, rec in enumerate(value)])
        if first is not None and ("context" in first or "questions" in first):
            return _read_records(value, "coqa-simple", "", _read_simple_record)
        if not value:
            raise _Reject("file has no records: the top-level list is empty")
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        first = _first_object(value["data"])
        if first is not None and "story" in first:
            return _read_records(value["data"], "coqa", "data", _read_coqa_record)
        if first is not None and "paragraphs" in first:
            return _read_squad(value["data"])
        if first is not None and "question" in first and "context" in first:
            return _read_flat(value["data"])
        if not value["data"]:
            raise _Reject('file has no records: "data" is empty')
    raise _Reject(f"{UNRECOGNISED}; found {_describe(value)}")


_KINDS = {"null": "null", "bool": "true/false", "string": "a string", "object": "an object", "list": "a list",
          "int": "a number", "float": "a number"}
_KIND_PLURALS = {"null": "nulls", "bool": "true/false values", "string": "strings", "object": "objects",
                 "list": "lists", "int": "numbers", "float": "numbers"}


def _describe(value: Any, top: bool = True) -> str:
    """What a JSON value is, for "unrecognised format" messages: ``null``, ``a JSON list of
    numbers``, ``an object with keys "a", "b"``, ``{"data": [...]} whose first record has keys ...``."""
    kind = _type_name(value)
    if isinstance(value, json.JSONDecodeError):
        return "not valid JSON"
    if isinstance(value, list):
        if not value:
            return "an empty JSON list"
        kinds = sorted({_KIND_PLURALS.get(_type_name(v), "values") for v in value[:1000]})
        first = _first_object(value)
        keys = f" (the first has keys {_keys(first)})" if first is not None else ""
        return f"a JSON list of {' and '.join(kinds)}{keys}"
    if isinstance(value, dict):
        data = value.get("data")
        if isinstance(data, list) and data and top:
            return f'{{"data": [...]}} whose records are {_describe(data, top=False).removeprefix("a JSON list of ")}'
        return f"an object with keys {_keys(value)}" if value else "an empty object"
    if isinstance(value, bool) and top:
        return "true" if value else "false"
    return _KINDS.get(kind, kind) if not top or kind == "null" else f"{_KINDS.get(kind, kind)} ({_quote(str(value), 40)})"


def _keys(record: dict, shown: int = 6) -> str:
    keys = [_quote(str(key), 30) for key in list(record)[:shown]]
    return ", ".join(keys) + (", ..." if len(record) > shown else "")


def _first_object(values: list) -> dict | None:
    return next((v for v in values if isinstance(v, dict)), None)


# --------------------------------------------------------------------------- field checks


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return {str: "string", dict: "object", list: "list"}.get(type(value), type(value).__name__)


_EXPECTED = {str: "a string", list: "a list", dict: "an object", int: "an integer", bool: "true or false"}


def _is(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _child(location: str, key: str) -> str:
    """``[4]`` + ``questions`` -> ``[4].questions``; JSONL lines read ``line 3, messages[1]``."""
    if not location:
        return key
    if location.startswith("line ") and "," not in location:
        return f"{location}, {key}"
    return f"{location}.{key}"


def _quote(text: str, limit: int = 60) -> str:
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def _field(record: dict, key: str, kind: type, location: str, faults: list, *, required: bool = True) -> Any:
    """``record[key]`` when present, of type ``kind`` and not blank; else note the fault, return None."""
    if key not in record:
        if required:
            faults.append((location, f'missing "{key}"'))
        return None
    value = record[key]
    if not _is(value, kind):
        faults.append((_child(location, key), f"expected {_EXPECTED[kind]}, got {_type_name(value)}"))
        return None
    if kind in (str, list) and not (value.strip() if kind is str else value):
        faults.append((location, f'empty "{key}"'))
        return None
    if kind is str and not _text_ok(value, _child(location, key), faults):
        return None
    return value


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _text_ok(text: str, location: str, faults: list) -> bool:
    """False (and a fault) for text holding a lone surrogate (``"\\ud800"`` in the file): it is
    not Unicode text, and tokenizers and JSON encoders refuse it."""
    found = _SURROGATE.search(text)
    if found is None:
        return True
    faults.append((location, f"holds a lone surrogate (\\u{ord(found.group()):04x}) at character {found.start()}: "
                             "not valid Unicode text"))
    return False


def _safe(text: str) -> str:
    """Text safe to send as JSON: lone surrogates written as ``\\udXXX`` escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if _SURROGATE.search(text) else text


def _object(value: Any, location: str, faults: list) -> dict | None:
    if isinstance(value, _Duplicates):
        repeated = ", ".join(_quote(key, 30) for key in value.repeated[:5])
        faults.append((location, f"repeats the key {repeated} (JSON keeps only the last value; which one was meant?)"))
        return None
    if isinstance(value, dict):
        return value
    faults.append((location, f"expected an object, got {_type_name(value)}"))
    return None


def _string_list(record: dict, key: str, location: str, faults: list, *, required: bool) -> list[str] | None:
    """A list of non-blank strings; an optional list that is absent, null or [] reads as []."""
    if not required and record.get(key) in (None, []):
        return []
    values = _field(record, key, list, location, faults, required=required)
    if values is None:
        return None
    before = len(faults)
    for index, value in enumerate(values):
        where = _child(location, f"{key}[{index}]")
        if not isinstance(value, str):
            faults.append((where, f"expected a string, got {_type_name(value)}"))
        elif not value.strip():
            faults.append((where, "empty string"))
        else:
            _text_ok(value, where, faults)
    return values if len(faults) == before else None


# --------------------------------------------------------------------------- format readers

_RecordReader = Callable[[Any, str], "tuple[Any, list[str], list[tuple[str, str]]]"]


def _read_records(records: list, fmt: str, prefix: str, read_one: _RecordReader) -> _Parsed:
    parsed = _Parsed(fmt, records=len(records))
    for index, record in enumerate(records):
        location = f"{prefix}[{index}]"
        _keep(parsed, location, *read_one(record, location))
    return parsed


def _keep(parsed: _Parsed, location: str, item: Any, turn_locations: list[str], faults: list) -> None:
    parsed.faults.extend(faults)
    if faults or item is None:
        parsed.skipped += 1
    else:
        parsed.items.append(item)
        parsed.sources.append(location)
        parsed.turn_locations.append(turn_locations)


def _read_simple_record(record: Any, location: str):
    faults: list[tuple[str, str]] = []
    if _object(record, location, faults) is None:
        return None, [], faults
    context = _field(record, "context", str, location, faults)
    questions = _string_list(record, "questions", location, faults, required=True)
    answers = _string_list(record, "answers", location, faults, required=False)
    if questions and answers and len(answers) != len(questions):
        faults.append((location, f"{len(questions)} questions but {len(answers)} answers"))
    if faults:
        return None, [], faults
    turns = [Turn(q.strip(), answers[i].strip() if answers else None) for i, q in enumerate(questions)]
    locations = [f"{location}.questions[{i}]" for i in range(len(turns))]
    return Passage(context.strip(), turns, location), locations, faults


def _read_coqa_record(record: Any, location: str):
    faults: list[tuple[str, str]] = []
    if _object(record, location, faults) is None:
        return None, [], faults
    story = _field(record, "story", str, location, faults)
    questions = _coqa_turns(record, "questions", location, faults, required=True)
    answers = _coqa_turns(record, "answers", location, faults, required=False)
    if questions is not None and answers:
        _match_turn_ids(questions, answers, location, faults)
    if faults or questions is None or story is None:
        return None, [], faults
    turns = [Turn(text, answers[tid][1] if answers else None) for tid, (_, text) in questions.items()]
    locations = [f"{location}.questions[{index}]" for index, _ in questions.values()]
    return Passage(story.strip(), turns, location), locations, faults


def _coqa_turns(record: dict, key: str, location: str, faults: list, *, required: bool):
    """``{turn_id: (index, input_text)}`` in file order, or None on any fault ({} when absent)."""
    if not required and record.get(key) in (None, []):
        return {}
    entries = _field(record, key, list, location, faults, required=required)
    if entries is None:
        return None
    turns: dict[int, tuple[int, str]] = {}
    before = len(faults)
    for index, entry in enumerate(entries):
        where = f"{location}.{key}[{index}]"
        if _object(entry, where, faults) is None:
            continue
        turn_id = _field(entry, "turn_id", int, where, faults)
        text = _field(entry, "input_text", str, where, faults)
        if turn_id in turns:
            faults.append((where, f"turn_id {turn_id} repeats {location}.{key}[{turns[turn_id][0]}]"))
        elif turn_id is not None and text is not None:
            turns[turn_id] = (index, text.strip())
    return turns if len(faults) == before else None


def _match_turn_ids(questions: dict, answers: dict, location: str, faults: list) -> None:
    for turn_id, (index, _) in answers.items():
        if turn_id not in questions:
            faults.append((f"{location}.answers[{index}]", f"turn_id {turn_id} matches no question"))
    for turn_id, (index, _) in questions.items():
        if turn_id not in answers:
            faults.append((f"{location}.questions[{index}]", f"no answer with turn_id {turn_id}"))


def _read_squad(articles: list) -> _Parsed:
    # Each paragraph is a passage: a fault skips that paragraph, not the whole article.
    parsed = _Parsed("squad", records=len(articles))
    for index, article in enumerate(articles):
        location = f"data[{index}]"
        faults: list[tuple[str, str]] = []
        paragraphs = _object(article, location, faults) and _field(article, "paragraphs", list, location, faults)
        if not paragraphs:
            _keep(parsed, location, None, [], faults)
            continue
        for number, paragraph in enumerate(paragraphs):
            where = f"{location}.paragraphs[{number}]"
            _keep(parsed, where, *_read_squad_paragraph(paragraph, where))
    return parsed


def _read_squad_paragraph(paragraph: Any, location: str):
    faults: list[tuple[str, str]] = []
    if _object(paragraph, location, faults) is None:
        return None, [], faults
    context = _field(paragraph, "context", str, location, faults)
    qas = _field(paragraph, "qas", list, location, faults)
    turns, locations = [], []
    for index, qa in enumerate(qas or []):
        where = f"{location}.qas[{index}]"
        turn = _read_squad_qa(qa, where, context, faults)
        if turn is not None:
            turns.append(turn)
            locations.append(where)
    if faults or context is None:
        return None, [], faults
    return Passage(context.strip(), turns, location), locations, faults


def _read_squad_qa(qa: Any, location: str, context: str | None, faults: list) -> Turn | None:
    if _object(qa, location, faults) is None:
        return None
    question = _field(qa, "question", str, location, faults)
    before = len(faults)
    impossible = _field(qa, "is_impossible", bool, location, faults, required=False)
    if len(faults) > before:  # unknown whether answers are required: checking them would only add noise
        return None
    if impossible:
        return Turn(question.strip(), NO_ANSWER) if question else None
    answers = _field(qa, "answers", list, location, faults)
    texts = [_read_squad_answer(a, f"{location}.answers[{i}]", context, faults) for i, a in enumerate(answers or [])]
    if question is None or not texts or None in texts:
        return None
    return Turn(question.strip(), texts[0].strip())


def _read_squad_answer(answer: Any, location: str, context: str | None, faults: list) -> str | None:
    if _object(answer, location, faults) is None:
        return None
    text = _field(answer, "text", str, location, faults)
    start = _field(answer, "answer_start", int, location, faults)
    if text is None or start is None or context is None:
        return None
    if not 0 <= start < len(context):
        faults.append((location, f"answer_start {start} is outside the context ({len(context)} characters)"))
        return None
    found = context[start : start + len(text)]
    if found != text:
        faults.append((location, f"answer_start {start} does not point at {_quote(text)} (the context there reads {_quote(found)})"))
        return None
    return text


def _read_flat(records: list) -> _Parsed:
    """``{"data": [{"context", "question", "answer"?}]}``: one question per record; records that
    share a context (same text after stripping) become one passage, in order of first appearance."""
    parsed = _Parsed("flat-qa", records=len(records))
    passages: dict[str, tuple[Passage, list[str]]] = {}
    for index, record in enumerate(records):
        location = f"data[{index}]"
        faults: list[tuple[str, str]] = []
        turn = None
        if _object(record, location, faults) is not None:
            context = _field(record, "context", str, location, faults)
            question = _field(record, "question", str, location, faults)
            answer = _field(record, "answer", str, location, faults, required=False) if record.get("answer") is not None else None
            if not faults:
                turn = (context.strip(), Turn(question.strip(), answer.strip() if answer is not None else None))
        parsed.faults.extend(faults)
        if turn is None:
            parsed.skipped += 1
            continue
        context, one = turn
        if context not in passages:
            passages[context] = (Passage(context, [], location), [])
        passage, locations = passages[context]
        passage.turns.append(one)
        locations.append(location)
    for passage, locations in passages.values():
        parsed.items.append(passage)
        parsed.sources.append(passage.source)
        parsed.turn_locations.append(locations)
    return parsed


def _read_chat_lines(lines: list[tuple[int, Any]]) -> _Parsed:
    parsed = _read_chat_records([(f"line {n}", v) for n, v in lines if not isinstance(v, json.JSONDecodeError)])
    bad = [(f"line {n}", v.msg if isinstance(v, _LineFault) else f"invalid JSON ({v.msg} at column {v.colno})")
           for n, v in lines if isinstance(v, json.JSONDecodeError)]
    parsed.records += len(bad)
    parsed.skipped += len(bad)
    parsed.faults = sorted(parsed.faults + bad, key=lambda fault: _line_number(fault[0]))
    return parsed


def _line_number(location: str) -> int:
    return int(re.match(r"line (\d+)", location).group(1))


def _read_chat_records(records: list[tuple[str, Any]]) -> _Parsed:
    parsed = _Parsed("chat-jsonl", records=len(records))
    for location, record in records:
        _keep(parsed, location, *_read_chat_record(record, location))
    return parsed


def _read_chat_record(record: Any, location: str):
    faults: list[tuple[str, str]] = []
    if _object(record, location, faults) is None:
        return None, [], faults
    messages = _field(record, "messages", list, location, faults)
    if record.get("meta") is not None:
        _field(record, "meta", dict, location, faults)
    conversation = []
    for index, message in enumerate(messages or []):
        where = _child(location, f"messages[{index}]")
        if _object(message, where, faults) is None:
            continue
        role = _field(message, "role", str, where, faults)
        content = _field(message, "content", str, where, faults)
        if role is not None and role not in ROLES:
            faults.append((_child(where, "role"), f'expected "system", "user" or "assistant", got {_quote(role)}'))
        conversation.append({"role": role, "content": content})
    if not faults and messages:
        roles = {message["role"] for message in conversation}
        faults.extend((location, f'no "{role}" message') for role in ("user", "assistant") if role not in roles)
    if faults:
        return None, [], faults
    locations = [_child(location, f"messages[{i}]") for i in range(len(conversation))]
    return conversation, locations, faults


# --------------------------------------------------------------------------- counts, duplicates


def _count(report: Report, parsed: _Parsed) -> None:
    report.records = parsed.records
    report.skipped = parsed.skipped
    if parsed.format == "chat-jsonl":
        report.conversations = len(parsed.items)
        report.messages = sum(len(conversation) for conversation in parsed.items)
    else:
        report.passages = len(parsed.items)
        report.questions = sum(len(p.turns) for p in parsed.items)
        report.answers = sum(t.answer is not None for p in parsed.items for t in p.turns)


def _not_a_question(text: str) -> bool:
    """A "question" with no letter at all, or of one or two Latin characters ("a", "1?", "ok"):
    what a broken export leaves behind. Two-character questions in scripts like Chinese pass."""
    text = text.strip()
    if not any(char.isalpha() for char in text):
        return True
    return len(text) <= 2 and text.isascii()


def _flag_non_questions(parsed: _Parsed) -> tuple[int, int, list[str]]:
    """Skip passages holding questions that are not questions (or too many questions), with a
    fault naming each; returns (broken, total questions, first broken texts) for the file verdict."""
    if parsed.format == "chat-jsonl":
        return 0, 0, []
    broken, total, examples = 0, 0, []
    kept_items, kept_sources, kept_locations = [], [], []
    for passage, source, locations in zip(parsed.items, parsed.sources, parsed.turn_locations):
        faults = []
        if len(passage.turns) > MAX_TURNS:
            faults.append((source, f"{len(passage.turns):,} questions in one passage, over the limit of {MAX_TURNS:,}"))
        for turn, location in zip(passage.turns, locations):
            total += 1
            if _not_a_question(turn.question):
                broken += 1
                if len(examples) < 5:
                    examples.append(_quote(turn.question, 20))
                faults.append((location, f"not a question: {_quote(turn.question, 20)} (no letters, or one or two characters)"))
        if faults:
            parsed.faults.extend(faults)
            parsed.skipped += 1
        else:
            kept_items.append(passage)
            kept_sources.append(source)
            kept_locations.append(locations)
    parsed.items, parsed.sources, parsed.turn_locations = kept_items, kept_sources, kept_locations
    return broken, total, examples


def _broken_questions_error(broken: tuple[int, int, list[str]]) -> str | None:
    count, total, examples = broken
    if not total or count * 2 <= total:
        return None
    return (f"most questions are not questions: {count:,} of {total:,} have no letters or only one or two characters "
            f"(e.g. {', '.join(examples)}); the file looks like a broken export, with the questions cut or replaced")


def _normalise(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip("?.! ")


def _dedupe(parsed: _Parsed, report: Report) -> list[tuple[str, str]]:
    """Drop repeated records, note repeated turns, and describe both as faults.

    A turn counts as repeated only when both question and answer repeat an earlier turn of the
    same passage: CoQA legitimately asks "Why?" several times with different answers.
    """
    chat = parsed.format == "chat-jsonl"
    seen_records: dict[tuple, str] = {}
    record_repeats, turn_repeats, kept = [], [], []
    for item, source, locations in zip(parsed.items, parsed.sources, parsed.turn_locations):
        if chat:
            key = tuple((message["role"], message["content"].strip()) for message in item)
        else:
            key = (_normalise(item.context), *(_normalise(turn.question) for turn in item.turns))
        if key in seen_records:
            record_repeats.append(f"{source} (same as {seen_records[key]})")
            continue
        seen_records[key] = source
        kept.append((item, source, locations))
        if not chat:
            turn_repeats += _repeated_turns(item, locations)
    parsed.items = [item for item, _, _ in kept]
    parsed.sources = [source for _, source, _ in kept]
    parsed.turn_locations = [locations for _, _, locations in kept]
    _count(report, parsed)
    report.duplicates = len(record_repeats) + len(turn_repeats)
    noun = "conversation" if chat else "passage"
    faults = []
    if record_repeats:
        verb = "repeats an earlier one and was" if len(record_repeats) == 1 else "repeat earlier ones and were"
        faults.append(("duplicates", f"{_plural(len(record_repeats), noun)} {verb} skipped: {_first_few(record_repeats)}"))
    if turn_repeats:
        verb = "repeats" if len(turn_repeats) == 1 else "repeat"
        faults.append(("duplicates", f"{_plural(len(turn_repeats), 'question')} {verb} an earlier question and answer"
                                     f" of the same passage: {_first_few(turn_repeats)}"))
    return faults


def _repeated_turns(passage: Passage, locations: list[str]) -> list[str]:
    seen: dict[tuple, str] = {}
    repeats = []
    for turn, location in zip(passage.turns, locations):
        key = (_normalise(turn.question), _normalise(turn.answer or ""))
        if key in seen:
            repeats.append(f"{location} (same as {seen[key]})")
        else:
            seen[key] = location
    return repeats


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _first_few(items: list[str], shown: int = 5) -> str:
    text = ", ".join(items[:shown])
    return text + (f", and {len(items) - shown} more" if len(items) > shown else "")


def _usability_error(parsed: _Parsed, task: str, skipped: int) -> str | None:
    if not parsed.items:
        return f"no valid records: {skipped} of {skipped} skipped for faults"
    if task == "chat" and parsed.format != "chat-jsonl":
        return f'task "chat" needs chat JSONL ({{"messages": [...]}} per line), but this file is {FORMAT_NAMES[parsed.format]}'
    if task != "chat" and parsed.format == "chat-jsonl":
        return f'task "{task}" needs passages with questions (CoQA or SQuAD), but this file is chat JSONL'
    return None


def _fault_lines(faults: list[tuple[str, str]]) -> list[str]:
    lines = [_safe(f"{location}: {problem}") for location, problem in faults[:FAULT_LIMIT]]
    if len(faults) > FAULT_LIMIT:
        lines.append(f"... and {len(faults) - FAULT_LIMIT} more faults")
    return lines


# --------------------------------------------------------------------------- token lengths


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    """A ``count(text) -> int`` from a tokenizer, an ``encode`` object or a counting function.

    >>> token_counter(lambda text: len(text.split()))("three short words")
    3
    """
    encode = getattr(tokenizer, "encode", None)
    function = encode if callable(encode) else tokenizer
    if not callable(function):
        raise TypeError(f"tokenizer must be callable or have .encode, got {type(tokenizer).__name__}")
    return lambda text: _length(function(text))


def _length(result: Any) -> int:
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    if isinstance(result, Mapping):
        result = result["input_ids"]
    result = getattr(result, "ids", result)  # tokenizers.Encoding
    if isinstance(result, (str, bytes)) or not hasattr(result, "__len__"):
        raise TypeError(f"tokenizer returned {type(result).__name__}, expected token ids or a count")
    return len(result)


def render_example(example: Conversation, tokenizer: Any = None) -> str:
    """The text a model trains on: the tokenizer's chat template when it has one, else
    ``role: content`` blocks separated by blank lines."""
    if getattr(tokenizer, "chat_template", None) and hasattr(tokenizer, "apply_chat_template"):
        try:
            return tokenizer.apply_chat_template(example, tokenize=False)
        except Exception:  # some templates refuse a system role; measure the plain text instead
            pass
    return "\n\n".join(f"{message['role']}: {message['content']}" for message in example)


def _token_lengths(examples: list[Conversation], tokenizer: Any) -> tuple[list[int], int]:
    """Token lengths of ``examples`` and how many were measured on their first ``MEASURE_CHARS``
    characters only (a 19 MB one-line chat must not be tokenized whole to learn it is too long)."""
    texts = [render_example(example, tokenizer) for example in examples]
    clipped = sum(len(text) > MEASURE_CHARS for text in texts)
    texts = [text[:MEASURE_CHARS] for text in texts]
    if hasattr(tokenizer, "apply_chat_template") and hasattr(tokenizer, "batch_decode"):
        # A Hugging Face tokenizer: batch the work in Rust; the template already holds any BOS.
        special = not getattr(tokenizer, "chat_template", None)
        lengths = []
        for start in range(0, len(texts), 200):
            batch = tokenizer(texts[start : start + 200], add_special_tokens=special)["input_ids"]
            lengths += [len(ids) for ids in batch]
        return lengths, clipped
    count = token_counter(tokenizer)
    return [count(text) for text in texts], clipped


def _measure(report: Report, examples: list[tuple[str, Conversation]], tokenizer: Any, max_length: int) -> None:
    if tokenizer is None or not examples:
        return
    sample = examples
    if len(examples) > TOKEN_SAMPLE:  # a seeded sample in file order: the same file gives the same report
        picked = sorted(random.Random(0).sample(range(len(examples)), TOKEN_SAMPLE))
        sample = [examples[i] for i in picked]
    lengths, clipped = _token_lengths([example for _, example in sample], tokenizer)
    ordered = sorted(lengths)
    p95 = ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]
    of = len(examples) if sample is not examples else 0
    report.token_stats = TokenStats(len(ordered), ordered[0], round(sum(ordered) / len(ordered), 1), p95, ordered[-1],
                                    of=of, clipped=clipped)
    over = [source for (source, _), length in zip(sample, lengths) if length > max_length]
    report.truncated = round(len(over) * len(examples) / len(sample))
    report.truncated_at = over[:5]


# --------------------------------------------------------------------------- summary


def _verdict(report: Report) -> str:
    kind = FORMAT_NAMES.get(report.format, "unknown format")
    if report.ok:
        return f"**{report.name}**: {kind}, ready to train, {_plural(report.examples, 'example')} for task `{report.task}`."
    return f"**{report.name}**: {kind}, rejected: {report.error}"


def _counts_table(report: Report) -> str:
    if not report.format:
        return f"Size {_human_size(report.size)}" + (f", sha256 `{report.sha256}`" if report.sha256 else "")
    if report.format == "chat-jsonl":
        rows = [("records", report.records), ("conversations", report.conversations), ("messages", report.messages)]
    else:
        rows = [("records", report.records), ("passages", report.passages), ("questions", report.questions), ("with answers", report.answers)]
    rows += [(f"examples (`{report.task}`)", report.examples), ("skipped for faults", report.skipped),
             ("duplicates", report.duplicates), ("size", _human_size(report.size)), ("sha256", f"`{report.sha256}`")]
    return "| | |\n|---|---|\n" + "\n".join(f"| {label} | {value} |" for label, value in rows)


def _human_size(size: int) -> str:
    if size < 1000:
        return f"{size} bytes"
    return f"{size / 1000:.1f} kB" if size < MB else f"{size / MB:.2f} MB"


def _token_line(report: Report) -> str:
    stats = report.token_stats
    if stats is None:
        return ""
    if stats.of:
        line = (f"**Tokens per example** (estimated from a sample of {stats.count:,} of {stats.of:,} examples): "
                f"min {stats.min}, mean {stats.mean}, p95 {stats.p95}, max {stats.max}; about {report.truncated:,} "
                f"of {stats.of:,} longer than {report.max_length} tokens")
    else:
        line = (f"**Tokens per example**: min {stats.min}, mean {stats.mean}, p95 {stats.p95}, max {stats.max}; "
                f"{report.truncated} of {stats.count} longer than {report.max_length} tokens")
    if report.truncated:
        line += f" (would be truncated; first at {', '.join(report.truncated_at)})"
    if stats.clipped:
        line += (f". {_plural(stats.clipped, 'example')} over {MEASURE_CHARS:,} characters measured on "
                 "their start only (their lengths are lower bounds)")
    return line


def _fault_list(report: Report) -> str:
    if not report.faults:
        return ""
    shown = [f"- `{fault.replace('`', chr(39))}`" for fault in report.faults[:SUMMARY_FAULTS]]
    hidden = max(report.fault_count, len(report.faults)) - min(len(report.faults), SUMMARY_FAULTS)
    if len(report.faults) > SUMMARY_FAULTS:
        shown.append(f"- ... and {hidden} more")
    return "**Faults**:\n" + "\n".join(shown)


if __name__ == "__main__":  # python -m convo.data FILE: the same as python -m convo data FILE
    from convo.cli.data import main

    raise SystemExit(main())
