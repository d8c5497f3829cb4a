"""The data layer's limits, errors and records: what every reader, check and report shares."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from ..engine.prompts import END_MARKERS  # noqa: F401  (the end-of-turn tokens the few-shot prompt closes with)

if TYPE_CHECKING:  # a type only: report.py builds on this module
    from .report import Report


MB = 1_000_000
MAX_BYTES = 32_000_000
"""Default upload cap, in bytes (reported in MB of 1,000,000 bytes): CoQA's training set as Hugging Face
``datasets`` writes it (``load_dataset("stanfordnlp/coqa")["train"].to_json(...)``, 7,199 passages) is
about 20 MB. The official JSON files (30-49 MB) are read from the command line (``max_bytes=None``)."""
MAX_DEPTH = 32
"""Deepest JSON nesting accepted; every supported format needs 6 levels at most."""
FAULT_LIMIT = 200
"""How many faults a report keeps; the rest are counted in a closing ``... and N more faults``."""
SUMMARY_FAULTS = 20
"""How many faults ``Report.summary()`` shows."""
MAX_WORK = 150_000
"""Most records plus questions plus messages one file may hold (a hard cap on work per upload; CoQA's
training set holds 7,199 passages and 108,647 questions)."""
MAX_VALUES = 2_000_000
"""Most JSON strings, objects and lists one file may hold (bounds the memory of the parsed file)."""
MAX_TURNS = 1_000
"""Most questions one passage may have (conversational examples grow with the square of it)."""
TOKEN_SAMPLE = 2_000
"""Token lengths are measured on at most this many examples (a seeded sample), else estimated."""
MEASURE_CHARS = 40_000
"""An example longer than this is measured on its first ``MEASURE_CHARS`` characters only."""

ROLES = ("system", "user", "assistant")
FORMATS = ("coqa-simple", "coqa", "squad", "flat-qa", "chat-jsonl", "alpaca", "sharegpt", "pairs", "preference")
FORMAT_NAMES = {"coqa-simple": "simplified CoQA", "coqa": "CoQA", "squad": "SQuAD", "flat-qa": "flat QA",
                "chat-jsonl": "chat JSONL", "alpaca": "Alpaca", "sharegpt": "ShareGPT", "pairs": "prompt/completion",
                "preference": "preference pairs (trains on the chosen replies)"}
DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".arrow", ".csv", ".tsv", ".xlsx", ".gz")
"""The names of the files training reads: JSON and JSON Lines; Parquet, as the Hub stores datasets; Arrow,
as ``datasets``' ``save_to_disk`` writes them; CSV, TSV and Excel, as spreadsheets; .gz, any of them gzipped."""
CHAT_FORMATS = ("chat-jsonl", "alpaca", "sharegpt", "pairs", "preference")
"""Formats read as conversations (the ``chat`` task); the others are passages with questions."""
TASKS = ("qg", "cqg", "qa", "qa_closed", "chat")
DEFAULT_TASKS = {"coqa-simple": "qg", "coqa": "qg", "squad": "qg", "flat-qa": "qg", "chat-jsonl": "chat",
                 "alpaca": "chat", "sharegpt": "chat", "pairs": "chat", "preference": "chat"}
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
# The question-generation completion format: worked examples, then the text to ask about. It is the
# prompt a base model follows best (a 135M instruct model asks a real question about one sentence
# here, and writes statements under the chat prompt), so the ``qg`` task trains on it too. The
# examples are about topics unlikely to share words with a user's passage, so a copied example fails
# the grounding check instead of being shown.
FEWSHOT_INSTRUCTION = "Each text is followed by one question that the text answers.\n\n"
FEWSHOT_SHOTS = (
    ("The Eiffel Tower was completed in 1889 as the entrance arch to the World's Fair in Paris.",
     "1889", "When was the Eiffel Tower completed?"),
    ("Penguins cannot fly, but their wings work as flippers that let them swim fast under water.",
     "as flippers", "How do penguins use their wings?"),
)
FEWSHOT_ROLE = "fewshot"
"""Role of the one message of a few-shot question prompt: its content is the text to ask about (an
``answer`` key makes it answer-aware). ``convo.data.render`` turns it into the completion text."""
TASK_PROMPT_STYLES = {"qg": "fewshot"}
"""The Questions prompt style an adapter of a task was trained in (``chat`` for the others)."""

PASSAGE_PROMPT = "Passage:\n{context}"
CONVERSATION_PROMPT = "Passage:\n{context}\n\nConversation so far:\n{history}"
QUESTION_PROMPT = "Passage:\n{context}\n\nQuestion: {question}"
NO_HISTORY = "(no questions yet)"

UNRECOGNISED = (
    'unrecognised format: expected CoQA ({"data": [{"story", "questions", ...}]}), '
    'simplified CoQA ([{"context", "questions"}]), SQuAD ({"data": [{"paragraphs": ...}]}), '
    'flat QA ({"context", "question", "answer"} records in "data", a list or JSON Lines; SQuAD as Hugging '
    'Face datasets writes it), '
    'chat JSONL ({"messages": [...]} per line), Alpaca ([{"instruction", "input", "output"}]), '
    'ShareGPT ([{"conversations": [{"from", "value"}]}]), prompt/completion ({"prompt", "completion"} '
    'records; also "prompt" and "response", or "question" and "answer") or preference pairs ({"chosen", '
    '"rejected"} records, the chosen conversation trained on)'
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


class DataError(Exception):
    """A file that cannot be trained on; ``.report`` has the details, ``str()`` the reason."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__(report.error or (report.faults[0] if report.faults else "data file was rejected"))


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
    skipped_questions: int = 0
    """The questions the skipped passages held (a fault in one skips its whole passage)."""


class _Duplicates(dict):
    """A JSON object that repeated a key; ``repeated`` names the keys (the last value was kept)."""

    repeated: list[str]


class _LineFault(json.JSONDecodeError):
    """A JSONL line refused before parsing (too deep); reported like invalid JSON on that line."""

    def __init__(self, message: str):
        ValueError.__init__(self, message)
        self.msg, self.colno = message, 0
