"""Question generation from a passage: sentence-aware chunking, model candidates, filters, ranking, fallback.

``generate_questions(passage, n)`` returns ranked :class:`Question` objects, each pointing at the
character span of the sentence (or chunk) it came from. CLI: ``python -m convo questions --file passage.txt -n 5``
(also ``python -m convo.questions ...``), one JSON object per line.

How it works, in order (each step a small function in one of the submodules):

1. **Split** the passage into sentences (character spans), cut over-long ones at word boundaries, and
   **pack** them into chunks that fit the model's context, overlapping by ``overlap_sentences``.
   When there are more chunks than ``max_chunks``, chunks are sampled evenly across the passage
   (first, last and evenly spaced in between), so a 20,000-word text costs the same as a few pages.
2. **Generate** candidates in one batched call (:func:`convo.engine.generation.generate_batch`) with a
   prompt style picked per model (see ``STYLES``): few-shot ``Text:``/``Question:`` completion aimed at
   one sentence for plain causal LMs such as the bundled SmolLM2-135M-Instruct; the exact
   ``qg``/``cqg`` training prompts of :mod:`convo.data` for fine-tuned adapters; ``<hl>`` highlight or
   ``generate question:``/``answer: ... context:`` inputs for T5-style seq2seq models.
3. **Filter** with :mod:`convo.filters` (a question, more than one word, no babble, no yes/no when
   ``open_only``, no near-duplicate of each other or of ``seen``, the questions already shown in this
   session), plus checks of our own: "near-duplicate" also for a question whose content words all
   appear in an earlier one (:func:`same_question`), "not about the passage" (grounding below
   ``min_grounding``), "unclear who or what "they" is" for a question shown on its own whose subject is
   a bare pronoun (:func:`convo.filters.unnamed_subject`; not for a conversation's next question) and,
   in answer-aware mode, "gives away the answer".
4. **Rank** (documented in :func:`rank`):
   ``score = mmr_lambda * relevance + (1 - mmr_lambda) * diversity`` with
   ``relevance = lm_weight * lm + (1 - lm_weight) * grounding``, where
   ``lm = exp(mean token log-prob)`` of the question under its source sentence's prompt
   (:func:`convo.engine.generation.continuation_logprobs`, one call per distinct prompt: see :func:`_score`),
   ``grounding`` = share of the question's content words found in its source chunk, and
   ``diversity = 1 - max similarity`` to the questions already selected or shown (maximal marginal
   relevance, picked greedily). With ``sentiment_weight`` > 0, ``sentiment_weight * sentiment``
   (VADER strength of the question, :mod:`convo.sentiment`) is added and shown as the ``sentiment`` part.
   Every kept :class:`Question` carries these parts.
5. **Fall back** to rule-based questions from the passage (definitions, years, named entities;
   ``source="rule: ..."``) when the model yields fewer than ``n`` good ones.

The package: settings (modes, styles, sampling, QuestionSettings, Question, QuestionRun, Chunk),
text (sentences, chunks, grounding and similarity), prompts (one per style, the chunk budget),
candidates (targets, model candidates, the rule-based fallback), ranking (relevance, MMR, accept and
drop, the parts of a Question), pipeline (question_run, generate_questions, the checks on an uploaded
passage), documents (the text of an HTML page, a PDF or a Word file). Its names are re-exported here.
"""
from __future__ import annotations

from .settings import (ABBREVIATIONS, CONVERSATION_SHOT, Chunk, DEFAULT_N, END_MARKERS, FEWSHOT_INSTRUCTION,
                       FEWSHOT_SHOTS, HIGHLIGHT, MAX_QUESTIONS, MIN_TARGET_WORDS, MODES, PRONOUN_START, QG_SAMPLING,
                       Question, QuestionError, QuestionRun, QuestionSettings, RULE_POOL, SEQ2SEQ_STYLES, STYLES,
                       _Candidate)
from .text import (_stem, best_sentence, content_stems, grounding, make_chunks, markdown_to_text, pick_evenly, similarity,
                   split_long, split_sentences, token_lengths)
from .prompts import (chunk_budget, conversation_fewshot_prompt, conversation_prompt, end_marker, fewshot_prompt,
                      highlighted, prompt_overhead, resolve_style, seq2seq_history, target_prompt)
from .candidates import (DEFINITION, ENTITY, ENTITY_SKIP, YEAR, answer_rule_questions, candidate_prompt, first_question,
                         model_candidates, plan_targets, rule_questions, scoring_prompt, target_units)
from .ranking import _accept, rank, relevance, same_question
from .pipeline import (MAX_PASSAGE_BYTES, PASSAGE_FORMATS, PASSAGE_SUFFIXES, _check_candidates, check_size,
                       decode_passage, generate_questions, locate_answer, normalize_history, passage_kind, question_run, read_passage,
                       spread_over_chunks)
from .documents import MAX_DOCUMENT_BYTES, document_kind, docx_to_text, html_to_text, pdf_to_text

__all__ = ["ABBREVIATIONS", "CONVERSATION_SHOT", "Chunk", "DEFAULT_N", "DEFINITION", "END_MARKERS", "ENTITY",
           "ENTITY_SKIP", "FEWSHOT_INSTRUCTION", "FEWSHOT_SHOTS", "HIGHLIGHT", "MAX_DOCUMENT_BYTES", "MAX_PASSAGE_BYTES", "MAX_QUESTIONS",
           "MIN_TARGET_WORDS", "MODES", "PASSAGE_FORMATS", "PASSAGE_SUFFIXES", "PRONOUN_START", "QG_SAMPLING", "Question", "QuestionError", "QuestionRun",
           "QuestionSettings", "RULE_POOL", "SEQ2SEQ_STYLES", "STYLES", "YEAR", "_Candidate", "_accept",
           "_check_candidates", "_stem", "answer_rule_questions", "best_sentence", "candidate_prompt", "check_size",
           "chunk_budget", "content_stems", "conversation_fewshot_prompt", "conversation_prompt", "decode_passage", "document_kind", "docx_to_text",
           "end_marker", "fewshot_prompt", "first_question", "generate_questions", "grounding", "highlighted", "html_to_text",
           "locate_answer", "make_chunks", "markdown_to_text", "model_candidates", "normalize_history", "passage_kind", "pdf_to_text", "pick_evenly",
           "plan_targets", "prompt_overhead", "question_run", "rank", "read_passage", "relevance", "resolve_style",
           "rule_questions", "same_question",
           "scoring_prompt", "seq2seq_history", "similarity", "split_long", "split_sentences", "spread_over_chunks",
           "target_prompt", "target_units", "token_lengths"]
