"""Candidates: the sentences to aim at, model questions generated in one batch, the prompt each is
scored under, and the rule-based fallback (definitions, years, named entities, answer-aware).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from .. import filters
from ..data import Turn
from ..engine.generation import generate_batch
from .prompts import conversation_prompt, target_prompt
from ..data.sentences import MIN_TARGET_WORDS, is_line, sentence_units
from .settings import Chunk, HIGHLIGHT, QuestionSettings, _Candidate
from .text import best_sentence, grounding, pick_evenly, split_sentences


def first_question(text: str) -> str:
    """The question in a model output: its first line that holds a question mark (also the full-width
    '？' and the Arabic '؟'), cut after it and from the start of its sentence, list markers and
    ``Question:``/``Q:`` labels removed. Returns the first line as is when none holds one. A chat
    model's lead-in ("Sure! Here is a question:") is left out: the question after it was dropped
    as "not a question" with it.

    >>> first_question(" What is it? Some chatter.\\nMore"), first_question("长城有多长？它很长。")
    ('What is it?', '长城有多长？')
    >>> first_question("Sure! Here's a question about the text:\\n\\n1. Why did Dr. Lee leave? He was ill.")
    'Why did Dr. Lee leave?'
    >>> first_question("Great passage. Here is one: what did the bees find?"), first_question("Is 3: 4 a ratio?")
    ('what did the bees find?', 'Is 3: 4 a ratio?')
    """
    text = text.replace(HIGHLIGHT, " ")
    text = re.sub(r"^\s*(?:question|q)\s*[:.)]\s*", "", text.strip(), flags=re.IGNORECASE)
    text = text.replace("<sep>", "\n")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    line = next((ln for ln in lines if _QUESTION_MARK.search(ln)), lines[0] if lines else "")
    line = filters.LIST_MARKER.sub("", line).strip().strip('"').strip()
    mark = _QUESTION_MARK.search(line)
    if mark:
        line = line[: mark.end()]
        sentences = split_sentences(line)
        line = line[sentences[-1][0]:] if sentences else line
        rest = _LEAD_IN.sub("", line)
        line = rest if len(rest.split()) >= 3 else line  # (a label's question of a word or two is no question)
    return line.strip().strip('"').strip()


_QUESTION_MARK = re.compile(f"[{filters.QUESTION_MARKS}]")
_LEAD_IN = re.compile(r"^[^:?？؟]{0,60}(?<!\d):\s+(?=\w)")
"""A label before the question on its line ("Here is one: ..."); a colon after a digit is a ratio's or
a time's."""


def target_units(passage: str, chunk: Chunk) -> list[tuple[int, int]]:
    """Spans a single question may be about (``convo.data.sentence_units``: the spans the ``qg``
    task trains on), without the ones too short to ask about and the ones that end in a line that
    is not a sentence (a heading, a table row: documents are full of them).

    >>> t = "Honey\\n\\nBees turn nectar into honey by fanning it. They seal it with wax.\\n\\nKingdom: Animalia"
    >>> [t[s:e] for s, e in target_units(t, Chunk(0, 0, len(t), tuple(split_sentences(t))))]
    ['Bees turn nectar into honey by fanning it.', 'Bees turn nectar into honey by fanning it. They seal it with wax.']
    """
    units = sentence_units(passage, chunk.sentences)
    long_enough = [u for u, sentence in zip(units, chunk.sentences)
                   if len(filters.words(passage[u[0]:u[1]])) >= MIN_TARGET_WORDS and not is_line(passage, sentence)]
    return long_enough or units


def plan_targets(passage: str, chunks: Sequence[Chunk], total: int,
                 seen: Sequence[str]) -> list[tuple[Chunk, tuple[int, int]]]:
    """``total`` (chunk, sentence span) targets spread over the chunks and, within each chunk, evenly
    over its sentences; sentences a ``seen`` question already covers go last, so a second run asks
    about something new."""
    per_chunk = [total // len(chunks) + (i < total % len(chunks)) for i in range(len(chunks))]
    targets = []
    for chunk, k in zip(chunks, per_chunk):
        units = target_units(passage, chunk)
        fresh = [u for u in units if not _covered(passage[u[0]:u[1]], seen)]
        stale = [u for u in units if u not in fresh]
        order = [fresh[i] for i in pick_evenly(len(fresh), len(fresh))] + stale
        picked = [order[i] for i in pick_evenly(len(order), min(k, len(order)))] if k <= len(fresh) else order
        while len(picked) < k:  # more samples than sentences: sample some sentences twice
            picked += order[: k - len(picked)]
        targets += [(chunk, u) for u in picked[:k]]
    return targets


def _covered(text: str, seen: Sequence[str]) -> bool:
    return any(grounding(q, text) >= 0.6 for q in seen)


def candidate_prompt(lm, style: str, mode: str, passage: str, chunk: Chunk, target: tuple[int, int],
                     answer: str | None, answer_span: tuple[int, int] | None, history: Sequence[Turn]) -> str:
    """The prompt a candidate about ``target`` is generated under."""
    if mode == "conversational":
        return conversation_prompt(lm, style, passage[chunk.start:chunk.end], history)
    if mode == "answer" and style == "highlight":
        target = answer_span
    return target_prompt(lm, style, passage, chunk, target, answer)


def model_candidates(lm, style: str, mode: str, passage: str, chunks: Sequence[Chunk], total: int,
                     settings: QuestionSettings, answer: str | None, answer_span: tuple[int, int] | None,
                     history: Sequence[Turn], seen: Sequence[str]) -> list[_Candidate]:
    """Draw ``total`` samples from the model in batches and turn each into one candidate."""
    if mode == "conversational":
        targets = [(chunks[i % len(chunks)], (chunks[i % len(chunks)].start, chunks[i % len(chunks)].end))
                   for i in range(total)]
    elif mode == "answer":
        targets = [(chunks[0], _unit_containing(passage, chunks[0], answer_span))] * total
    else:
        targets = plan_targets(passage, chunks, total, seen)
    prompts = [candidate_prompt(lm, style, mode, passage, c, u, answer, answer_span, history) for c, u in targets]
    outputs = generate_batch(lm, None, settings.sampling, batch_size=settings.batch_size, prompts=prompts,
                             keep_replies=False)
    candidates = []
    for (chunk, unit), prompt, output in zip(targets, prompts, outputs):
        text = first_question(output)
        if style == "chat" or mode == "conversational":
            unit = best_sentence(text, passage, chunk)
        candidates.append(_Candidate(text, chunk, unit,
                                     prompt=scoring_prompt(style, mode, passage, unit, answer, prompt, history)))
    return candidates


def scoring_prompt(style: str, mode: str, passage: str, target: tuple[int, int], answer: str | None,
                   prompt: str, history: Sequence[Turn] = ()) -> str:
    """The prompt a candidate's likelihood is measured under: its generation prompt, except that the
    few-shot style keeps only the candidate's source sentence (``Text: <sentence>\nQuestion:``; in a
    conversation also the last turn, then ``Q:``). The worked examples and the rest of the chunk made
    scoring cost 3-5x as much (the model's own forward ran prompt + question once per candidate, the
    dominant cost on CPU; both ways now run a prompt once) without saying anything about the question
    that its sentence does not."""
    if style != "fewshot":
        return prompt
    text = f"Text: {passage[target[0]:target[1]]}\n"
    if mode == "conversational":
        last = [f"Q: {t.question}\n" + (f"A: {t.answer}\n" if t.answer is not None else "") for t in history[-1:]]
        return text + "".join(last) + "Q:"
    return text + (f"Answer: {answer}\n" if answer is not None else "") + "Question:"


def _unit_containing(passage: str, chunk: Chunk, span: tuple[int, int]) -> tuple[int, int]:
    for unit in target_units(passage, chunk):
        if unit[0] <= span[0] and span[1] <= unit[1]:
            return unit
    return next(((s, e) for s, e in chunk.sentences if s <= span[0] < e), (chunk.start, chunk.end))


DEFINITION = re.compile(r"^((?:(?:An?|The)\s+)?[A-Za-z][\w-]*(?:\s+[a-z][\w-]*){0,3})\s+(is|are)\s+(?:an?|the)\s+\w",)
YEAR = re.compile(r"\b(?:[Ii]n|by|from|since|until|of)\s+(?:the\s+year\s+)?(\d{3,4}(?:\s+(?:BC|AD|BCE|CE))?)\b")
ENTITY = re.compile(r"\b((?:The\s+)?[A-Z][a-z]+(?:[- ](?:(?:of|von|van|de|da|del|la|le|du|the)\s+){0,2}[A-Z][a-z]+)+)\b")
ENTITY_SKIP = frozenset("the a an in on at it this that these those there when where what which who while during "
                        "after before because today most many some each every along across between from with for by "
                        "as since until although however also both".split())


def rule_questions(passage: str, chunk: Chunk) -> list[tuple[str, tuple[int, int], str]]:
    """Questions built from the chunk's sentences without a model: ``(text, span, kind)``.

    >>> p = "A volcano is an opening in the crust. Tambora erupted in 1815 in Indonesia."
    >>> [q for q, _, _ in rule_questions(p, Chunk(0, 0, len(p), tuple(split_sentences(p))))]
    ['What is a volcano?', 'What happened in 1815?']

    A line that ends no sentence (a heading, a byline, a name in a list of authors) asks nothing: "What
    does the text say about Fabio Fiorina?" came from a manual's list of contributors.
    """
    found, seen_keys = [], set()
    if not english(passage[chunk.start:chunk.end]):
        return found  # the templates are English ("What does the text say about Fluss Europas?")

    def add(text: str, span: tuple[int, int], kind: str) -> None:
        if filters.normalize(text) not in seen_keys:
            seen_keys.add(filters.normalize(text))
            found.append((text, span, kind))

    for s, e in chunk.sentences:
        if is_line(passage, (s, e)):
            continue
        sentence = passage[s:e]
        match = DEFINITION.match(sentence)
        if match and filters.content_words(match.group(1)):
            subject = match.group(1)
            if subject.split()[0] in ("A", "An", "The") or f" {subject[0].lower()}{subject[1:]} " in passage:
                subject = subject[0].lower() + subject[1:]  # a common noun, not a name
            add(f"What {match.group(2)} {subject}?", (s, e), "rule: definition")
        for year in YEAR.findall(sentence):
            add(f"What happened in {year}?", (s, e), "rule: number")
        for name in ENTITY.findall(sentence):
            words_ = name.split()
            article = "the " if words_[0] == "The" else ""
            while words_ and words_[0].lower() in ENTITY_SKIP:
                words_ = words_[1:]
            if len(words_) >= 2:
                add(f"What does the text say about {article}{' '.join(words_)}?", (s, e), "rule: named entity")
    return found


ENGLISH_WORDS = frozenset("the and of to is are was were that with for this it by from has have".split())


def english(text: str) -> bool:
    """Whether ``text`` reads as English, as the rule-based questions' templates are: at least one word
    in twenty is one of its commonest (a German, French or Chinese passage got English questions about
    its names). A text of a few words passes.

    >>> english("A volcano is an opening in the crust."), english("Der Rhein ist einer der längsten Flüsse Europas.")
    (True, False)
    """
    words = filters.words(text)
    return len(words) < 5 or sum(w.lower() in ENGLISH_WORDS for w in words) * 20 >= len(words)


def answer_rule_questions(passage: str, unit: tuple[int, int], answer: str,
                          answer_span: tuple[int, int]) -> list[tuple[str, tuple[int, int], str]]:
    """Answer-aware fallback: when the answer opens a sentence (its subject), ask for it (in English).

    >>> p = "Karl von Frisch described the waggle dance."
    >>> answer_rule_questions(p, (0, len(p)), "Karl von Frisch", (0, 15))[0][0]
    'Who or what described the waggle dance?'
    """
    if not english(passage):  # (the whole passage: one sentence may hold none of the commonest words)
        return []
    for s, e in split_sentences(passage[unit[0]:unit[1]]):
        start, end = unit[0] + s, unit[0] + e
        if start == answer_span[0] and answer_span[1] < end:
            rest = passage[answer_span[1]:end].strip().rstrip(".!")
            if len(filters.words(rest)) >= 2:
                return [(f"Who or what {rest}?", (start, end), "rule: answer subject")]
    return []
