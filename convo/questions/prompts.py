"""Prompts per style: the style picked for a model, few-shot and conversation prompts, highlighted
and prefixed seq2seq inputs, the prompt overhead and the chunk budget it leaves.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..data import PASSAGE_PROMPT, QG_SYSTEM, Turn, cqg_prompt, fewshot_text, qg_fewshot_prompt, qg_prompt, render
from ..data import end_marker as data_end_marker
from ..engine.generation import render_prompt
from .settings import (CONVERSATION_SHOT, Chunk, HIGHLIGHT,
                       QuestionError, QuestionSettings, SEQ2SEQ_STYLES)
from .text import token_lengths


def resolve_style(lm, style: str) -> str:
    """The concrete prompt style for ``lm`` (see ``STYLES``); raises QuestionError on a mismatch."""
    if style == "auto":
        if getattr(lm, "remote", False):  # a server takes chat messages
            return "chat"
        if getattr(lm.spec, "adapter", None):  # ask as it was trained
            return getattr(lm, "prompt_style", None) or "chat"
        return "highlight" if lm.is_seq2seq else "fewshot"
    if style in SEQ2SEQ_STYLES and not lm.is_seq2seq:
        raise QuestionError(f"The '{style}' prompt style is for seq2seq (T5-style) models; "
                            f"'{lm.spec.label}' is a causal LM: choose 'fewshot' or 'chat'.")
    return style


def end_marker(lm) -> str:
    """The text of a token that stops generation for ``lm`` (its end-of-turn or EOS token), or ''."""
    from ..engine.generation import stop_token_ids

    return data_end_marker(lm.tokenizer, stop_token_ids(lm))


def fewshot_prompt(text: str, answer: str | None = None, end: str = "") -> str:
    """Raw completion prompt asking for one question about ``text`` (``convo.data.fewshot_text``).

    >>> fewshot_prompt("Bees dance.").splitlines()[-2:]
    ['Text: Bees dance.', 'Question:']
    """
    return fewshot_text(text, answer, end)


def conversation_fewshot_prompt(chunk_text: str, history: Sequence[Turn], end: str = "") -> str:
    """CoQA-style completion: a worked conversation, then the passage and the turns so far, then ``Q:``."""

    def block(text: str, turns: Iterable[tuple[str, str | None]]) -> str:
        lines = [f"Text: {text}"]
        for question, answer in turns:
            lines.append(f"Q: {question}{end}")
            if answer is not None:
                lines.append(f"A: {answer}")
        return "\n".join(lines)

    shot_text, shot_turns = CONVERSATION_SHOT
    return block(shot_text, shot_turns) + "\n\n" + block(chunk_text, [(t.question, t.answer) for t in history]) + "\nQ:"


def highlighted(text: str, start: int, end: int) -> str:
    """``text`` with ``text[start:end]`` wrapped in ``<hl>`` markers (lmqg input format)."""
    return f"{text[:start]}{HIGHLIGHT} {text[start:end]} {HIGHLIGHT}{text[end:]}"


def seq2seq_history(history: Sequence[Turn]) -> str:
    return " ".join(f"question: {t.question} answer: {t.answer or ''}".strip() for t in history)


def target_prompt(lm, style: str, passage: str, chunk: Chunk, target: tuple[int, int],
                  answer: str | None) -> str:
    """The prompt asking for a question about ``target`` (a sentence span, or the answer span)."""
    chunk_text = passage[chunk.start:chunk.end]
    if style == "fewshot":  # the qg task's training prompt, about the same span
        return render(lm, qg_fewshot_prompt(passage[target[0]:target[1]], answer))
    if style == "chat":
        if answer is None:
            return render_prompt(lm, qg_prompt(chunk_text))
        return render_prompt(lm, [{"role": "system", "content": QG_SYSTEM},
                                  {"role": "user", "content": PASSAGE_PROMPT.format(context=chunk_text)
                                   + f"\n\nAnswer: {answer}"}])
    if style == "highlight":
        return "generate question: " + highlighted(chunk_text, target[0] - chunk.start, target[1] - chunk.start)
    if answer is not None:  # prefix
        return f"answer: {answer}  context: {chunk_text}"
    return "generate question: " + passage[target[0]:target[1]]


def conversation_prompt(lm, style: str, chunk_text: str, history: Sequence[Turn]) -> str:
    """The prompt asking for the next question of a conversation about ``chunk_text``."""
    if style == "chat":
        return render_prompt(lm, cqg_prompt(chunk_text, history))
    if style == "fewshot":
        return conversation_fewshot_prompt(chunk_text, history, end_marker(lm))
    return f"generate question: {seq2seq_history(history)} context: {chunk_text}".replace("  ", " ")


def prompt_overhead(lm, style: str, mode: str, answer: str | None, history: Sequence[Turn]) -> int:
    """Tokens a prompt spends besides the passage text (examples, instructions, history)."""
    empty = Chunk(0, 0, 0, ())
    if mode == "conversational":
        text = conversation_prompt(lm, style, "", history)
    else:
        text = target_prompt(lm, style, "", empty, (0, 0), answer)
    return token_lengths(lm.tokenizer, [text])[0] + 8


def chunk_budget(lm, settings: QuestionSettings, overhead: int) -> int:
    """Tokens of passage text one prompt may carry: ``chunk_tokens``, lowered to fit the context."""
    room = lm.context_length - overhead - (0 if lm.is_seq2seq else settings.sampling.max_new_tokens) - 16
    budget = min(settings.chunk_tokens, room)
    if budget < 32:
        raise QuestionError(f"The model's context ({lm.context_length} tokens) leaves no room for the passage "
                            "after the prompt; shorten the conversation history or use a larger model.")
    return budget
