"""The pipeline: ``question_run`` / ``generate_questions`` (inputs checked, chunks chosen, candidates
generated, checked, scored and ranked, rule questions when short), and the checks on an uploaded
passage (size, binary, encoding).
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from .. import filters
from ..data import Turn, decode_marked
from .candidates import (_unit_containing, answer_rule_questions, candidate_prompt, model_candidates, rule_questions,
                         scoring_prompt)
from .prompts import chunk_budget, prompt_overhead, resolve_style
from .ranking import _accept, _dropped, _kept_reasons, _question, _score, rank
from .settings import (Chunk, DEFAULT_N, MAX_QUESTIONS, Question, QuestionError, QuestionRun, QuestionSettings,
                       RULE_POOL, _Candidate)
from .documents import (DOCX_SUFFIXES, HTML_SUFFIXES, MAX_DOCUMENT_BYTES, PDF_SUFFIXES, document_kind,
                        document_to_text)
from .text import (MARKDOWN_SUFFIXES, content_stems, grounding, is_markdown, make_chunks, markdown_to_text,
                   pick_evenly, split_long, split_sentences, token_lengths)


def normalize_history(history) -> list[Turn]:
    """Turns from ``Turn`` objects, ``(question, answer)`` pairs, ``{"question", "answer"}`` dicts or strings."""
    turns = []
    for i, item in enumerate(history or ()):
        if isinstance(item, Turn):
            turns.append(item)
        elif isinstance(item, str):
            turns.append(Turn(item))
        elif isinstance(item, dict) and isinstance(item.get("question"), str):
            turns.append(Turn(item["question"], item.get("answer")))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str):
            turns.append(Turn(item[0], item[1]))
        else:
            raise QuestionError(f"history[{i}]: expected a question string, a (question, answer) pair or "
                                "{'question', 'answer'}")
    return turns


def locate_answer(passage: str, answer: str, start: int | None = None) -> tuple[int, int]:
    """The answer's span in the passage: at ``start`` when it matches there, else its first
    (case-insensitive) occurrence, else the sentence sharing most words with it."""
    answer = answer.strip()
    if start is not None and passage[start:start + len(answer)].lower() == answer.lower():
        return start, start + len(answer)
    found = passage.lower().find(answer.lower())
    if found >= 0:
        return found, found + len(answer)
    wanted = content_stems(answer)
    scored = [(len(wanted & content_stems(passage[s:e])), (s, e)) for s, e in split_sentences(passage)]
    best = max(scored, default=(0, None))
    if not best[0]:
        raise QuestionError(f"The answer {answer[:60]!r} does not appear in the passage: "
                            "select or type a span of the passage.")
    return best[1]


def question_run(passage: str, n: int = DEFAULT_N, model=None, answer: str | None = None, history=None,
                 settings: QuestionSettings = QuestionSettings(), seen: Iterable[str] = (),
                 answer_start: int | None = None) -> QuestionRun:
    """Generate, filter and rank questions about ``passage``; keep the dropped ones for inspection.

    ``model``: a LoadedModel, ModelSpec, name or None (``$CONVO_MODEL`` or the bundled model).
    ``answer`` switches to answer-aware mode; ``history`` (a list, possibly empty) to conversational
    mode. ``seen``: questions already shown in this session, never repeated.
    """
    started = time.monotonic()
    _check_inputs(passage, n, answer)
    lm = _as_model(model)
    turns = normalize_history(history) if history is not None else []
    mode = "answer" if answer and answer.strip() else ("conversational" if history is not None else "open")
    style = resolve_style(lm, settings.style)
    seen = [q for q in seen if q and q.strip()] + [t.question for t in turns]
    answer_span = locate_answer(passage, answer, answer_start) if mode == "answer" else None
    answer = answer.strip() if mode == "answer" else None

    budget = chunk_budget(lm, settings, prompt_overhead(lm, style, mode, answer, turns))
    sentences = split_long(passage, split_sentences(passage), lm.tokenizer, budget)
    lengths = token_lengths(lm.tokenizer, [passage[s:e] for s, e in sentences])
    chunks = make_chunks(sentences, lengths, budget, settings.overlap_sentences)
    used = _chunks_to_use(passage, chunks, mode, settings, answer_span, turns)

    total = settings.candidate_count(n)
    timings = {}
    clock = time.monotonic()
    cands = model_candidates(lm, style, mode, passage, used, total, settings, answer, answer_span, turns, seen)
    timings["generate"] = time.monotonic() - clock
    rules = _rule_candidates(lm, style, mode, passage, used, answer, answer_span, turns) if settings.fallback else []
    _check_candidates(cands + rules, passage, settings, answer, standalone=mode != "conversational")

    clock = time.monotonic()
    _score(lm, style, cands)
    accepted = _accept(cands, seen, settings)
    if len(accepted) < n and rules:  # rule questions are scored only when needed, and only a few
        pool = spread_over_chunks([r for r in rules if not r.faults], RULE_POOL * (n - len(accepted)))
        _score(lm, style, pool)
        accepted += _accept(pool, seen + [c.text for c in accepted], settings)
    timings["score"] = time.monotonic() - clock
    selected = rank([c for c in accepted if c.source == "model"], n, settings, seen=seen)
    if len(selected) < n:
        selected = rank([c for c in accepted if c.source != "model"], n, settings, selected, seen=seen)
    questions = [_question(c, parts, kept=True, reasons=_kept_reasons(c, parts, rank_=i + 1))
                 for i, (c, parts) in enumerate(selected)]
    dropped = _dropped(cands + rules, {id(c) for c, _ in selected}, settings)
    timings = {k: round(v, 3) for k, v in timings.items()}
    return QuestionRun(questions, dropped, mode, style, len(chunks), [c.index for c in used], len(cands),
                       round(time.monotonic() - started, 3), timings)


def generate_questions(passage: str, n: int = 5, model=None, answer: str | None = None, history=None,
                       settings: QuestionSettings = QuestionSettings(), seen: Iterable[str] = (),
                       answer_start: int | None = None) -> list[Question]:
    """Up to ``n`` good, varied questions about ``passage``, best first (see :func:`question_run`).

    >>> qs = generate_questions(open("passage.txt").read(), 5)  # doctest: +SKIP
    >>> qs[0].text, qs[0].span, qs[0].parts["grounding"]        # doctest: +SKIP
    """
    return question_run(passage, n, model, answer, history, settings, seen, answer_start).questions


def _check_inputs(passage, n, answer) -> None:
    if not isinstance(passage, str) or not passage.strip():
        raise QuestionError(f"The passage is empty: give some text (pasted, or in a {PASSAGE_FORMATS} file).")
    if not isinstance(n, int) or not 1 <= n <= MAX_QUESTIONS:
        raise QuestionError(f"The number of questions must be between 1 and {MAX_QUESTIONS}, got {n!r}.")
    if answer is not None and not isinstance(answer, str):
        raise QuestionError("The answer must be text.")


def _as_model(model):
    from ..engine import LoadedModel, get_model

    return model if isinstance(model, LoadedModel) else get_model(model)


def _chunks_to_use(passage, chunks, mode, settings, answer_span, turns) -> list[Chunk]:
    """Answer mode: the chunk holding the answer. Conversational: the chunk the last question came
    from and the next one (conversations walk through a text). Open: evenly sampled chunks."""
    if mode == "answer":
        return [next((c for c in chunks if c.start <= answer_span[0] and answer_span[1] <= c.end),
                     min(chunks, key=lambda c: abs(c.start - answer_span[0])))]
    if mode == "conversational":
        at = 0
        if turns:
            at = max(range(len(chunks)), key=lambda i: grounding(turns[-1].question, passage[chunks[i].start:chunks[i].end]))
        return chunks[at:at + 2]
    return [chunks[i] for i in pick_evenly(len(chunks), settings.max_chunks)]


def _rule_candidates(lm, style, mode, passage, chunks, answer, answer_span, turns) -> list[_Candidate]:
    if mode == "answer":
        unit = _unit_containing(passage, chunks[0], answer_span)
        found = [(chunks[0], t, span, kind) for t, span, kind in answer_rule_questions(passage, unit, answer, answer_span)]
    else:
        found = [(c, t, span, kind) for c in chunks for t, span, kind in rule_questions(passage, c)]
    prompts = {(c.index, span): candidate_prompt(lm, style, mode, passage, c, span, answer, answer_span, turns)
               for c, _, span, _ in found}
    return [_Candidate(t, c, span, kind,
                       prompt=scoring_prompt(style, mode, passage, span, answer, prompts[c.index, span], turns))
            for c, t, span, kind in found]


def spread_over_chunks(cands: Sequence[_Candidate], k: int) -> list[_Candidate]:
    """Up to ``k`` candidates taken round-robin over their chunks (in passage order), so a fill-in
    from a long passage does not all come from its first chunk."""
    by_chunk: dict[int, list[_Candidate]] = {}
    for cand in cands:
        by_chunk.setdefault(cand.chunk.index, []).append(cand)
    queues = [by_chunk[i] for i in sorted(by_chunk)]
    picked: list[_Candidate] = []
    while len(picked) < k and any(queues):
        for queue in queues:
            if queue and len(picked) < k:
                picked.append(queue.pop(0))
    return picked


def _check_candidates(cands: Sequence[_Candidate], passage: str, settings: QuestionSettings,
                      answer: str | None, standalone: bool = True) -> None:
    """Faults that do not depend on the other candidates (duplicates are judged while selecting).
    ``standalone``: the questions are shown on their own (not a conversation's next question)."""
    for cand in cands:
        chunk_text = passage[cand.chunk.start:cand.chunk.end]
        cand.grounding = grounding(cand.text, chunk_text)
        cand.faults = filters.question_faults(cand.text, open_only=settings.open_only)
        if cand.source == "model" and cand.grounding < settings.min_grounding and "not a question" not in cand.faults:
            cand.faults.append("not about the passage")
        if answer and cand.source == "model" and filters.normalize(answer) in filters.normalize(cand.text):
            cand.faults.append("gives away the answer")
        pronoun = filters.unnamed_subject(cand.text) if standalone else None
        if pronoun:  # a question shown on its own: nothing says who "they" are (a conversation would)
            cand.faults.append(f'unclear who or what "{pronoun}" is')


MAX_PASSAGE_BYTES = 2_000_000
"""Largest passage text accepted: a text or Markdown file, or the text read from a document (the tab caps
uploads the same way)."""
DOCUMENT_SUFFIXES = HTML_SUFFIXES + PDF_SUFFIXES + DOCX_SUFFIXES
PASSAGE_SUFFIXES = (".txt", ".text", *MARKDOWN_SUFFIXES, *DOCUMENT_SUFFIXES)
"""The files the Questions tab takes (``--file`` reads any name: text unless it is one of the documents)."""
PASSAGE_FORMATS = ".txt, .md, .html, .pdf or .docx"


def check_size(size: int, name: str = "passage", document: bool | None = None, what: str = "the file") -> None:
    """Raise QuestionError when a file of ``size`` bytes is over its limit: ``MAX_PASSAGE_BYTES`` for
    text, ``MAX_DOCUMENT_BYTES`` for an HTML, PDF or Word file (``document``, by default told by the
    name's suffix; their text is then held to the first). ``what`` is measured: "its text" for a
    pasted passage."""
    document = name.lower().endswith(DOCUMENT_SUFFIXES) if document is None else document
    limit = MAX_DOCUMENT_BYTES if document else MAX_PASSAGE_BYTES
    if size > limit:
        raise QuestionError(f"{name}: {what} is {size / 1e6:.1f} MB; the limit is "
                            f"{limit / 1e6:.0f} MB. Split it, or use a part of it.")


def decode_passage(data: bytes, name: str = "passage") -> str:
    """Bytes of a text file -> text; one clear error for empty, oversize, binary or non-UTF-8 input."""
    check_size(len(data), name)
    try:  # UTF-16 or UTF-32 with a byte-order mark: Windows Notepad's "Unicode", PowerShell
        marked = decode_marked(data)
    except ValueError as exc:
        raise QuestionError(f"{name}: the file {exc}. Save it as UTF-8 and try again.") from None
    if marked is not None:
        if not marked.strip():
            raise QuestionError(f"{name}: the file is empty.")
        return marked
    if b"\x00" in data[:65536]:
        raise QuestionError(f"{name}: this is a binary file, not text: convo reads {PASSAGE_FORMATS} files.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise QuestionError(f"{name}: the file is not UTF-8 text (invalid byte at position {exc.start}). "
                            "Save it as UTF-8 and try again.") from None
    if not text.strip():
        raise QuestionError(f"{name}: the file is empty.")
    return text


def passage_kind(name: str, data: bytes) -> str | None:
    """How a passage file is read: ``"pdf"``, ``"html"``, ``"docx"`` (:func:`document_kind`: a PDF by
    its first bytes whatever its name), ``"md"``, or None for plain text."""
    return document_kind(name, data) or ("md" if is_markdown(name) else None)


def read_passage(data: bytes, name: str = "passage") -> str:
    """A passage file's text (:func:`decode_passage`); a Markdown file's without its markup
    (:func:`markdown_to_text`), so questions do not quote it; an HTML page's, a PDF's or a Word
    document's as a reader sees it (:mod:`convo.questions.documents`)."""
    kind = passage_kind(name, data)
    if kind not in (None, "md"):
        check_size(len(data), name, document=True)
        try:
            text = document_to_text(kind, data, max_chars=MAX_PASSAGE_BYTES)
        except ValueError as exc:
            raise QuestionError(f"{name}: the file {exc}.") from None
        if not text.strip():
            raise QuestionError(f"{name}: the file has no text outside its menus, scripts and code blocks.")
        check_size(len(text.encode("utf-8")), name, document=False, what="its text")
        return text
    text = decode_passage(data, name)
    if kind == "md":
        text = markdown_to_text(text)
        if not text.strip():
            raise QuestionError(f"{name}: the file has no text outside its Markdown markup and code blocks.")
    return text
