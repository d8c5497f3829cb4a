"""Ranking: relevance (LM score and grounding), maximal marginal relevance, the filters that accept or
drop a candidate, and the parts and reasons each kept or dropped Question carries.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from .. import filters
from ..engine.generation import continuation_logprobs
from .settings import Question, QuestionSettings, _Candidate
from .text import content_stems, similarity


def relevance(lm_logprob: float, grounding_: float, lm_weight: float) -> tuple[float, float]:
    """``(lm, relevance)``: lm = exp(mean token log-prob), the per-token geometric-mean probability in
    0..1; relevance = lm_weight * lm + (1 - lm_weight) * grounding."""
    lm = math.exp(lm_logprob) if lm_logprob > -50 else 0.0
    return lm, lm_weight * lm + (1 - lm_weight) * grounding_


def rank(pool: Sequence[_Candidate], n: int, settings: QuestionSettings,
         selected: list[tuple[_Candidate, dict]] | None = None, seen: Sequence[str] = ()) -> list[tuple[_Candidate, dict]]:
    """Greedy maximal marginal relevance: repeatedly take the candidate with the highest
    ``score = mmr_lambda * relevance + (1 - mmr_lambda) * diversity`` where
    ``diversity = 1 - max(similarity to each question already selected or in seen)`` (1 for the first
    pick of a fresh session), plus ``sentiment_weight * sentiment`` when that option is on
    (:func:`convo.sentiment.feeling`: how strongly the question feels, 0..1). Similarity is the
    content-word Jaccard overlap, raised to 0.5 for two selected questions about the same sentence,
    so the list spreads over the passage. Returns ``(candidate, parts)`` in pick order, appended to ``selected``.
    """
    selected = list(selected or [])
    remaining = list(pool)
    while remaining and len(selected) < n:
        best, best_parts = None, None
        for cand in remaining:
            lm, rel = relevance(cand.lm_logprob, cand.grounding, settings.lm_weight)
            sim = max([max(similarity(cand.text, other.text), 0.5 * (cand.span == other.span)) for other, _ in selected]
                      + [similarity(cand.text, text) for text in seen], default=0.0)
            diversity = 1.0 - sim
            score = settings.mmr_lambda * rel + (1 - settings.mmr_lambda) * diversity
            parts = {"lm": lm, "lm_logprob": cand.lm_logprob, "grounding": cand.grounding, "relevance": rel,
                     "diversity": diversity, **_sentiment_part(cand.text, settings)}
            score += settings.sentiment_weight * parts.get("sentiment", 0.0)
            if best_parts is None or score > best_parts["score"]:
                best, best_parts = cand, {"score": score, **parts}
        selected.append((best, best_parts))
        remaining.remove(best)
    return selected


def _score(lm, style: str, cands: Sequence[_Candidate]) -> None:
    """Each candidate's mean token log-prob under its scoring prompt (:func:`scoring_prompt`): one
    continuation_logprobs call per distinct prompt (per chunk for the whole-chunk styles, per sentence
    for ``fewshot``), over the candidates that passed the filters. Per-sentence prompts instead of one
    per chunk: the model's own forward ran prompt + question for every row, so a 300-token chunk
    prompt cost ~5x the tokens of a sentence prompt (measured on the bundled model: 13 s vs 3 s; both
    ways now run each prompt once)."""
    joiner = " " if style == "fewshot" else ""  # the prompt ends in "Question:" / "Q:"
    by_prompt: dict[str, list[_Candidate]] = {}
    for cand in cands:
        if not cand.faults:
            by_prompt.setdefault(cand.prompt, []).append(cand)
    for prompt, group in by_prompt.items():
        for cand, logprob in zip(group, continuation_logprobs(lm, prompt, [joiner + c.text for c in group])):
            cand.lm_logprob = logprob


def _accept(cands: Sequence[_Candidate], seen: Sequence[str], settings: QuestionSettings) -> list[_Candidate]:
    """Candidates that pass every filter, best first; a near-duplicate of ``seen`` or of a better
    candidate gets the fault "near-duplicate" and is left out."""
    shown = list(seen)
    accepted = []
    for cand in sorted((c for c in cands if not c.faults),
                       key=lambda c: -relevance(c.lm_logprob, c.grounding, settings.lm_weight)[1]):
        faults = filters.question_faults(cand.text, seen=shown, open_only=settings.open_only)
        if not faults and any(same_question(cand.text, other) for other in shown):
            faults = ["near-duplicate"]
        if faults:
            cand.faults = faults
            continue
        shown.append(cand.text)
        accepted.append(cand)
    return accepted


def same_question(a: str, b: str) -> bool:
    """Stricter than filters.near_duplicate for short questions: same question word, and every content
    word of the shorter one (two at least) in the longer ("Who built the lighthouse?" vs
    "Who built the Lighthouse of Alexandria?").

    >>> same_question("Who built the lighthouse?", "Who built the Lighthouse of Alexandria?")
    True
    >>> same_question("What is photosynthesis?", "What happens during photosynthesis?")
    False
    """
    wa, wb = content_stems(a), content_stems(b)
    first_a, first_b = filters.words(a)[:1], filters.words(b)[:1]
    return first_a == first_b and min(len(wa), len(wb)) >= 2 and (wa <= wb or wb <= wa)


def _dropped(cands: Sequence[_Candidate], picked: set[int], settings: QuestionSettings) -> list[Question]:
    dropped = []
    for cand in cands:
        if cand.faults:
            reasons = tuple(cand.faults)
        elif id(cand) in picked:
            continue
        else:
            reasons = ("ranked below the top n",) if cand.source == "model" else ("not used as a fill-in",)
        dropped.append(_question(cand, _parts(cand, settings), kept=False, reasons=reasons))
    return dropped


def _parts(cand: _Candidate, settings: QuestionSettings) -> dict:
    lm, rel = relevance(cand.lm_logprob, cand.grounding, settings.lm_weight)
    sentiment = _sentiment_part(cand.text, settings)
    return {"score": settings.mmr_lambda * rel + settings.sentiment_weight * sentiment.get("sentiment", 0.0),
            "lm": lm, "lm_logprob": cand.lm_logprob, "grounding": cand.grounding, "relevance": rel,
            "diversity": None, **sentiment}


def _sentiment_part(text: str, settings: QuestionSettings) -> dict:
    """``{"sentiment": feeling}`` when the sentiment option is on, else nothing (the part is not shown)."""
    if not settings.sentiment_weight:
        return {}
    from ..sentiment import feeling

    return {"sentiment": feeling(text)}


def _kept_reasons(cand: _Candidate, parts: dict, rank_: int) -> tuple[str, ...]:
    return ("passes every filter", f"grounding {parts['grounding']:.2f}", f"diversity {parts['diversity']:.2f}",
            f"rank {rank_} by score" + ("" if cand.source == "model" else " (rule-based fill-in)"))


def _question(cand: _Candidate, parts: dict, kept: bool, reasons: tuple[str, ...]) -> Question:
    clean = {k: (None if v is None or (isinstance(v, float) and math.isinf(v)) else round(v, 4))
             for k, v in parts.items() if k != "score"}
    return Question(cand.text, round(parts["score"], 4), clean, cand.span, cand.source, reasons, kept,
                    cand.chunk.index)
