"""Task prompts (qg, cqg, qa, qa_closed, chat) and the training examples built from passages and turns."""
from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from .base import (CONVERSATION_PROMPT, CQG_SYSTEM, Conversation, Data, END_MARKERS, FEWSHOT_INSTRUCTION, FEWSHOT_ROLE,
                   FEWSHOT_SHOTS, Message, NO_ANSWER, NO_HISTORY, PASSAGE_PROMPT, Passage, QA_CLOSED_SYSTEM, QA_SYSTEM, QG_SYSTEM,
                   QUESTION_PROMPT, TASKS, Turn)
from .sentences import focus_unit


def qg_prompt(context: str) -> Conversation:
    """Messages asking for one question about ``context`` (no assistant turn yet)."""
    return [{"role": "system", "content": QG_SYSTEM}, {"role": "user", "content": PASSAGE_PROMPT.format(context=context)}]


def qg_fewshot_prompt(text: str, answer: str | None = None) -> Conversation:
    """The few-shot completion prompt asking for one question about ``text`` (the ``qg`` task's
    prompt, and the Questions tab's ``fewshot`` style); ``answer`` makes it answer-aware.

    >>> qg_fewshot_prompt("Bees dance.")
    [{'role': 'fewshot', 'content': 'Bees dance.'}]
    """
    message = {"role": FEWSHOT_ROLE, "content": text}
    if answer is not None:
        message["answer"] = answer
    return [message]


def fewshot_text(text: str, answer: str | None = None, end: str = "") -> str:
    """Raw completion text: two worked examples (each question closed by ``end``), then ``text``
    waiting for its question.

    >>> fewshot_text("Bees dance.").splitlines()[-2:]
    ['Text: Bees dance.', 'Question:']
    """
    parts = [FEWSHOT_INSTRUCTION]
    for shot_text, shot_answer, shot_question in FEWSHOT_SHOTS:
        parts.append(f"Text: {shot_text}\n" + (f"Answer: {shot_answer}\n" if answer is not None else "")
                     + f"Question: {shot_question}{end}\n\n")
    parts.append(f"Text: {text}\n" + (f"Answer: {answer}\n" if answer is not None else "") + "Question:")
    return "".join(parts)


def is_fewshot(messages: Sequence[Message]) -> bool:
    """True for a prompt or example built by ``qg_fewshot_prompt``."""
    return bool(messages) and messages[0].get("role") == FEWSHOT_ROLE


def render_fewshot(messages: Sequence[Message], end: str) -> str:
    """A few-shot prompt as completion text; with its question (an assistant message) the training
    text: `` <question><end>`` after ``Question:``, as the model is asked to write it."""
    prompt, replies = messages[0], messages[1:]
    text = fewshot_text(prompt["content"], prompt.get("answer"), end)
    return text + "".join(f" {reply['content'].strip()}{end}" for reply in replies)


def end_marker(tokenizer: Any, stop_ids: Sequence[int] | None = None) -> str:
    """The text of the token that ends a reply for this tokenizer: its end-of-turn marker or EOS
    (one of ``stop_ids`` when given), or '' when it has none."""
    from ..engine.prompts import token_id

    for marker in END_MARKERS + ((tokenizer.eos_token,) if getattr(tokenizer, "eos_token", None) else ()):
        token = token_id(tokenizer, marker)
        if token is not None and (stop_ids is None or token in stop_ids):
            return marker
    return ""


def render(lm: Any, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
    """The text ``lm`` sees for a prompt or training example of these tasks: a few-shot prompt as
    completion text closed by the model's own end marker, anything else through its chat template
    (``engine.generation.render_prompt``)."""
    if is_fewshot(messages):
        if getattr(lm, "remote", False):
            raise ValueError("the few-shot question prompt is a raw completion: it needs a local model, "
                             "not a chat server")
        from ..engine.prompts import stop_token_ids

        return render_fewshot(messages, end_marker(lm.tokenizer, stop_token_ids(lm)))
    from ..engine.generation import render_prompt

    return render_prompt(lm, list(messages), add_generation_prompt)


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
            if turn.answer == NO_ANSWER and task != "qa":
                # unanswerable (SQuAD v2.0 is_impossible, CoQA "unknown"): `qa` learns to say so; a
                # question generator should ask what its text answers, and no sentence holds the answer
                continue
            if task == "qg":  # about the span a question targets, as the Questions tab asks it
                focus = focus_unit(passage.context, turn.question, turn.answer)
                yield source, qg_fewshot_prompt(focus) + [_assistant(turn.question)]
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
