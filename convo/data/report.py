"""The report: counts, duplicates, token lengths and the summary a user reads."""
from __future__ import annotations

from dataclasses import dataclass, field
import math
import random
from collections.abc import Callable, Mapping
from typing import Any

from .base import (CHAT_FORMATS, Conversation, FAULT_LIMIT, FORMAT_NAMES, MAX_TURNS, MB, MEASURE_CHARS, NO_ANSWER, Passage, SUMMARY_FAULTS,
                   TOKEN_SAMPLE, TokenStats, _Parsed)
from .checks import _quote, _safe
from .tasks import end_marker, is_fewshot, render_fewshot


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
    """Questions that have an answer (not counting unanswerable ones)."""
    unanswerable: int = 0
    """Questions marked unanswerable (SQuAD v2.0 ``is_impossible``, or the answer ``unknown``): targets
    of the ``qa`` task only, which learns to answer ``unknown``."""
    conversations: int = 0
    messages: int = 0
    examples: int = 0
    """Training examples for ``task`` (identical examples are counted once)."""
    skipped: int = 0
    """Passages or conversations skipped because of faults."""
    skipped_questions: int = 0
    """The questions those passages held (not counted in ``questions``)."""
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
    unanswered_at: list[str] = field(default_factory=list)
    """The first few passages holding questions with no answer at all (not a fault: answers are
    optional, as in simplified CoQA; the summary says what it means for the task)."""

    def summary(self) -> str:
        """Markdown for a person: verdict, counts, token lengths and the first faults."""
        return "\n\n".join(part for part in (_verdict(self), _counts_table(self), _unanswered_line(self), _token_line(self),
                                              _fault_list(self)) if part)


def _count(report: Report, parsed: _Parsed) -> None:
    report.records = parsed.records
    report.skipped, report.skipped_questions = parsed.skipped, parsed.skipped_questions
    if parsed.format in CHAT_FORMATS:
        report.conversations = len(parsed.items)
        report.messages = sum(len(conversation) for conversation in parsed.items)
    else:
        report.passages = len(parsed.items)
        report.questions = sum(len(p.turns) for p in parsed.items)
        report.answers = sum(t.answer not in (None, NO_ANSWER) for p in parsed.items for t in p.turns)
        report.unanswerable = sum(t.answer == NO_ANSWER for p in parsed.items for t in p.turns)
        report.unanswered_at = [p.source for p in parsed.items if any(t.answer is None for t in p.turns)][:3]


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
    if parsed.format in CHAT_FORMATS:
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
            parsed.skipped_questions += len(passage.turns)
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
    chat = parsed.format in CHAT_FORMATS
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
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _first_few(items: list[str], shown: int = 5) -> str:
    text = ", ".join(items[:shown])
    return text + (f", and {len(items) - shown} more" if len(items) > shown else "")


def _usability_error(parsed: _Parsed, task: str, skipped: int) -> str | None:
    if not parsed.items:
        return f"no valid records: {skipped} of {skipped} skipped for faults"
    if task == "chat" and parsed.format not in CHAT_FORMATS:
        return (f'task "chat" needs conversations (chat JSONL, Alpaca, ShareGPT, prompt/completion or preference '
                f'pairs), but this file is {FORMAT_NAMES[parsed.format]}')
    if task != "chat" and parsed.format in CHAT_FORMATS:
        return (f'task "{task}" needs passages with questions (CoQA or SQuAD), but this file is '
                f'{FORMAT_NAMES[parsed.format]}')
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
    """The text a model trains on: a few-shot question example as its completion text, else the
    tokenizer's chat template when it has one, else ``role: content`` blocks separated by blank lines."""
    if is_fewshot(example):
        return render_fewshot(example, end_marker(tokenizer) if hasattr(tokenizer, "convert_tokens_to_ids") else "")
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
        return f"Size {human_size(report.size)}" + (f", sha256 `{report.sha256}`" if report.sha256 else "")
    if report.format in CHAT_FORMATS:
        rows = [("records", report.records), ("conversations", report.conversations), ("messages", report.messages)]
    else:
        rows = [("records", report.records), ("passages", report.passages), ("questions", report.questions), ("with answers", report.answers)]
        if report.unanswerable:
            rows.append((f'unanswerable (answer "{NO_ANSWER}"; trained by `qa` only)', report.unanswerable))
    skipped = report.skipped
    if report.skipped_questions:  # a fault skips its whole passage: say what went with it
        skipped = f"{skipped:,} (with {_plural(report.skipped_questions, 'question')})"
    rows += [(f"examples (`{report.task}`)", report.examples), ("skipped for faults", skipped),
             ("duplicates", report.duplicates)]
    # the size and the 64-digit hash on a line of their own, where they can wrap (in the table's narrow
    # column the hash ran past its edge), and a header row that says what the table holds
    return ("| in the file | count |\n|---|---|\n"
            + "\n".join(f"| {label} | {value:,} |" if isinstance(value, int) else f"| {label} | {value} |"
                        for label, value in rows)
            + f"\n\nSize {human_size(report.size)}, sha256 `{report.sha256}`")


UNANSWERED_MEANS = {
    "qa": "they give no `qa` example (the other tasks train on them)",
    "qa_closed": "they give no `qa_closed` example (the other tasks train on them)",
    "qg": "`qg` finds the sentence each asks about from its words alone",
    "cqg": "`cqg` shows them in the earlier turns without their answers",
}


def _unanswered_line(report: Report) -> str:
    """A note, not a fault, when questions come with no answer (a story without "answers"): the counts
    alone ("with answers 11") showed it, and nothing said what it meant for training."""
    unanswered = report.questions - report.answers - report.unanswerable
    if not report.ok or unanswered <= 0 or report.task not in UNANSWERED_MEANS:
        return ""
    where = ", ".join(f"`{_safe(source).replace('`', chr(39))}`" for source in report.unanswered_at)
    return (f"**Note**: {unanswered:,} of {_plural(report.questions, 'question')} {'has' if unanswered == 1 else 'have'} "
            f"no answer (first in {where}): {UNANSWERED_MEANS[report.task]}.")


def human_size(size: int) -> str:
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
    if not report.faults or report.faults == [report.error]:  # a whole-file rejection: its verdict says it
        return ""
    shown = [f"- `{fault.replace('`', chr(39))}`" for fault in report.faults[:SUMMARY_FAULTS]]
    hidden = max(report.fault_count, len(report.faults)) - min(len(report.faults), SUMMARY_FAULTS)
    if len(report.faults) > SUMMARY_FAULTS:
        shown.append(f"- ... and {hidden} more")
    return "**Faults**:\n" + "\n".join(shown)


if __name__ == "__main__":  # python -m convo.data FILE: the same as python -m convo data FILE
    from convo.cli.data import main

    raise SystemExit(main())
