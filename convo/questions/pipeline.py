"""Question generation from a passage: sentence-aware chunking, model candidates, filters, ranking, fallback.

``generate_questions(passage, n)`` returns ranked :class:`Question` objects, each pointing at the
character span of the sentence (or chunk) it came from. CLI: ``python -m convo questions --file passage.txt -n 5``
(also ``python -m convo.questions ...``), one JSON object per line.

How it works, in order (each step a small function below):

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
   ``min_grounding``) and, in answer-aware mode, "gives away the answer".
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

Why one module: chunking, candidates, filters and ranking form one scored pipeline whose parts are
tuned against each other (benchmarks/question_quality.py); the issue-17 work edits it this session,
so the split into convo/questions/ waits for that to land.
"""
from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from .. import filters
from ..data import PASSAGE_PROMPT, QG_SYSTEM, Turn, cqg_prompt, qg_prompt
from ..engine.generation import continuation_logprobs, generate_batch, render_prompt
from ..settings import Sampling

MODES = ("open", "answer", "conversational")
STYLES = ("auto", "fewshot", "chat", "highlight", "prefix")
"""Prompt styles. ``auto``: ``chat`` when an adapter is loaded (it was trained on convo.data's qg/cqg
prompts), ``highlight`` for seq2seq models, ``fewshot`` for other causal LMs.

* ``fewshot``: raw completion ``Text: <sentence>\\nQuestion:`` after two worked examples; works on base
  and instruct models alike, and steers even a 135M model to a real question about one sentence.
* ``chat``: the model's chat template with ``convo.data.qg_prompt`` / ``cqg_prompt`` (whole chunk).
* ``highlight``: ``generate question: ... <hl> sentence-or-answer <hl> ...`` (lmqg / valhalla ``hl`` models).
* ``prefix``: ``generate question: <sentence>``, or ``answer: <answer>  context: <chunk>`` (valhalla ``qg-prep``).
"""
SEQ2SEQ_STYLES = ("highlight", "prefix")
HIGHLIGHT = "<hl>"
MAX_QUESTIONS = 50
RULE_POOL = 3
"""Rule-based candidates scored per missing question (each costs a forward pass)."""

QG_SAMPLING = Sampling(temperature=0.7, top_p=0.9, top_k=50, max_new_tokens=32, repetition_penalty=1.1)
"""Short outputs: a question rarely needs more than 25 tokens, and every extra token costs a decode step."""

# Worked examples for the few-shot style. They are about topics unlikely to share words with a user's
# passage, so a copied example fails the grounding check instead of being shown.
FEWSHOT_INSTRUCTION = "Each text is followed by one question that the text answers.\n\n"
FEWSHOT_SHOTS = (
    ("The Eiffel Tower was completed in 1889 as the entrance arch to the World's Fair in Paris.",
     "1889", "When was the Eiffel Tower completed?"),
    ("Penguins cannot fly, but their wings work as flippers that let them swim fast under water.",
     "as flippers", "How do penguins use their wings?"),
)
CONVERSATION_SHOT = (
    "The Eiffel Tower was completed in 1889 as the entrance arch to the World's Fair in Paris. "
    "It is 330 metres tall and was the tallest structure in the world until 1930.",
    (("When was the Eiffel Tower completed?", "in 1889"), ("Why was it built?", "as the entrance arch to the World's Fair"),
     ("How tall is it?", None)),
)
END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
"""End-of-turn tokens put after each example question, so the model ends its own question with one
and generation stops there (measured: about 1.5x faster than running to max_new_tokens)."""

PRONOUN_START = frozenset("it its they their them this these those he she his her such there that".split())
"""A sentence starting with one of these needs the sentence before it to make sense on its own."""
MIN_TARGET_WORDS = 4
ABBREVIATIONS = frozenset("mr mrs ms dr prof st sr jr vs etc e.g i.e no fig approx mt inc ltd co ca cf al".split())


class QuestionError(ValueError):
    """Bad input to question generation; the message is one line a user can act on."""


DEFAULT_N = 5
"""Questions asked for by default (the tab, the CLI and the API)."""


@dataclass(frozen=True)
class QuestionSettings:
    """How questions are generated, filtered and ranked (the tab, the CLI and the tests build this)."""

    open_only: bool = True
    """Drop questions a bare yes/no answers."""
    candidates: int = 0
    """Model samples to draw in total; 0 means ``max(8, 2 * n)``."""
    style: str = "auto"
    """Prompt style, one of ``STYLES``."""
    sampling: Sampling = QG_SAMPLING
    """Decoding settings for the candidates."""
    chunk_tokens: int = 384
    """Upper bound on a chunk's length in tokens (lowered further to fit the model's context)."""
    overlap_sentences: int = 1
    """Sentences a chunk shares with the one before it, so no question loses its context at a cut."""
    max_chunks: int = 8
    """Chunks processed at most; longer passages are sampled evenly (first, last, evenly between)."""
    lm_weight: float = 0.5
    """Share of the model likelihood in relevance; the rest is grounding."""
    mmr_lambda: float = 0.7
    """Share of relevance in the final score; the rest is diversity (maximal marginal relevance)."""
    min_grounding: float = 0.3
    """Model questions with a smaller share of content words from their chunk are dropped."""
    fallback: bool = True
    """Fill up to ``n`` with rule-based questions when the model yields too few."""
    batch_size: int = 16
    """Prompts decoded together (16 holds the default 10 candidates of n=5 in one batch)."""
    sentiment_weight: float = 0.0
    """Weight of the question's feeling (:func:`convo.sentiment.feeling`, 0..1) added to the score;
    0 leaves it out (and out of the parts)."""

    def __post_init__(self):
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        check(0 <= self.candidates <= 256, f"candidates must be in [0, 256], got {self.candidates}")
        check(self.style in STYLES, f"style must be one of {STYLES}, got {self.style!r}")
        check(isinstance(self.sampling, Sampling), "sampling must be a Sampling")
        check(32 <= self.chunk_tokens <= 32768, f"chunk_tokens must be in [32, 32768], got {self.chunk_tokens}")
        check(0 <= self.overlap_sentences <= 5, f"overlap_sentences must be in [0, 5], got {self.overlap_sentences}")
        check(1 <= self.max_chunks <= 1000, f"max_chunks must be in [1, 1000], got {self.max_chunks}")
        check(0 <= self.lm_weight <= 1, f"lm_weight must be in [0, 1], got {self.lm_weight}")
        check(0 <= self.mmr_lambda <= 1, f"mmr_lambda must be in [0, 1], got {self.mmr_lambda}")
        check(0 <= self.min_grounding <= 1, f"min_grounding must be in [0, 1], got {self.min_grounding}")
        check(1 <= self.batch_size <= 256, f"batch_size must be in [1, 256], got {self.batch_size}")
        check(0 <= self.sentiment_weight <= 1, f"sentiment_weight must be in [0, 1], got {self.sentiment_weight}")

    def candidate_count(self, n: int) -> int:
        return self.candidates or max(8, 2 * n)


@dataclass(frozen=True)
class Question:
    """A generated question and why it was kept (or dropped).

    ``span`` is ``(start, end)`` into the passage: the source sentence, or the chunk when no single
    sentence could be named. ``parts`` holds the score's parts (``lm``, ``lm_logprob``, ``grounding``,
    ``relevance``, ``diversity``). ``source`` is ``"model"`` or ``"rule: <kind>"``.
    """

    text: str
    score: float
    parts: dict
    span: tuple[int, int]
    source: str = "model"
    reasons: tuple[str, ...] = ()
    kept: bool = True
    chunk: int = 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["span"] = list(self.span)
        data["reasons"] = list(self.reasons)
        return data


@dataclass
class QuestionRun:
    """Everything one call produced: the kept questions (ranked) and the dropped ones (for inspection)."""

    questions: list[Question]
    dropped: list[Question]
    mode: str
    style: str
    chunks: int
    """Chunks the passage was cut into."""
    chunks_used: list[int]
    """Indices of the chunks that were processed."""
    generated: int
    """Model samples drawn (the denominator of the keep ratio)."""
    seconds: float
    timings: dict = field(default_factory=dict)
    """Seconds spent generating and scoring."""

    @property
    def model_kept(self) -> int:
        return sum(q.source == "model" for q in self.questions)


@dataclass(frozen=True)
class Chunk:
    """A run of whole sentences that fits the model's context."""

    index: int
    start: int
    end: int
    sentences: tuple[tuple[int, int], ...]


@dataclass
class _Candidate:
    text: str
    chunk: Chunk
    span: tuple[int, int]
    source: str = "model"
    faults: list[str] = field(default_factory=list)
    lm_logprob: float = float("-inf")
    grounding: float = 0.0
    prompt: str = ""
    """The prompt the candidate is scored under (the one it was generated from, for model questions)."""


# --------------------------------------------------------------------------- text units


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (whitespace trimmed; paragraph breaks and
    Markdown headings end a sentence; common abbreviations and initials do not).

    >>> t = "Dr. Who met J. Smith. It rained!  New day"
    >>> [t[s:e] for s, e in split_sentences(t)]
    ['Dr. Who met J. Smith.', 'It rained!', 'New day']
    """
    cuts = []
    for m in re.finditer(r"[.!?]+[\"'”’)\]]*(?=\s+[\"'“‘(\[#*-]?[A-Z0-9])|\n[ \t]*\n|\n(?=[ \t]*#)|^[ \t]*#[^\n]*\n",
                         text, flags=re.MULTILINE):
        if m.group().startswith(".") and _ends_with_abbreviation(text, m.start()):
            continue
        cuts.append(m.end())
    spans, start = [], 0
    for cut in cuts + [len(text)]:
        span = _trimmed(text, start, cut)
        if span:
            spans.append(span)
        start = max(start, cut)
    return spans


def _ends_with_abbreviation(text: str, dot: int) -> bool:
    before = re.search(r"([A-Za-z.]+)$", text[max(0, dot - 12):dot])
    if not before:
        return False
    word = before.group(1).lower().strip(".")
    return word in ABBREVIATIONS or (len(word) == 1 and text[dot - 1].isupper())


def _trimmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def token_lengths(tokenizer, texts: Sequence[str]) -> list[int]:
    """Token count of each text (no special tokens), in one tokenizer call."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def split_long(text: str, spans: Sequence[tuple[int, int]], tokenizer, budget: int) -> list[tuple[int, int]]:
    """Cut every span longer than ``budget`` tokens into word-aligned pieces that fit."""
    result: list[tuple[int, int]] = []
    todo = list(spans)
    while todo:
        lengths = token_lengths(tokenizer, [text[s:e] for s, e in todo])
        again = []
        for (s, e), length in zip(todo, lengths):
            if length <= budget:
                result.append((s, e))
                continue
            words = [(m.start() + s, m.end() + s) for m in re.finditer(r"\S+", text[s:e])]
            if len(words) <= 1:  # one enormous "word": cut it by characters
                step = max(1, (e - s) * budget // (2 * length))
                again.extend((i, min(e, i + step)) for i in range(s, e, step))
                continue
            pieces = max(2, math.ceil(length / (0.8 * budget)))
            size = math.ceil(len(words) / pieces)
            again.extend((words[i][0], words[min(i + size, len(words)) - 1][1]) for i in range(0, len(words), size))
        todo = again
    return sorted(result)


def make_chunks(spans: Sequence[tuple[int, int]], lengths: Sequence[int], budget: int,
                overlap: int = 1) -> list[Chunk]:
    """Pack sentences into chunks of at most ``budget`` tokens; each chunk starts with the last
    ``overlap`` sentences of the one before (when they leave room for at least one new sentence).

    >>> [c.sentences for c in make_chunks([(0, 1), (2, 3), (4, 5)], [5, 5, 5], budget=10)]
    [((0, 1), (2, 3)), ((2, 3), (4, 5))]
    """
    chunks: list[Chunk] = []
    i = 0
    while i < len(spans):
        j, total = i, 0
        while j < len(spans) and (j == i or total + lengths[j] <= budget):
            total += lengths[j]
            j += 1
        group = tuple(spans[i:j])
        chunks.append(Chunk(len(chunks), group[0][0], group[-1][1], group))
        if j >= len(spans):
            break
        i = max(i + 1, j - overlap)
    return chunks


def pick_evenly(count: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(count)``, first and last included.

    >>> pick_evenly(10, 3)
    [0, 4, 9]
    """
    if k >= count:
        return list(range(count))
    if k == 1:
        return [0]
    return sorted({round(i * (count - 1) / (k - 1)) for i in range(k)})


# --------------------------------------------------------------------------- grounding and similarity


def _stem(word: str) -> str:
    """Crude stem so 'volcanoes'/'volcano', 'bees'/'bee', "Mei's"/'Mei' and 'lived'/'live'/'living'
    match: possessive, plural and -ed/-ing endings off, a final 'e' off, 6-letter prefix.

    >>> [_stem(w) for w in ("mei's", "lived", "live", "living", "helped", "volcanoes", "bee")]
    ['mei', 'liv', 'liv', 'liv', 'help', 'volcan', 'bee']
    """
    word = re.sub(r"'s?$", "", word)
    for suffix, repl in (("ies", "y"), ("oes", "o"), ("es", "e"), ("s", "")):
        if len(word) > 4 and word.endswith(suffix) and not word.endswith("ss"):
            word = word[: -len(suffix)] + repl
            break
    for suffix in ("ing", "ed"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word[:6]


def content_stems(text: str) -> set[str]:
    return {_stem(w) for w in filters.content_words(text)}


def grounding(question: str, source: str) -> float:
    """Share of the question's content words (stemmed) that occur in ``source`` (0..1).

    >>> grounding("When did Tambora erupt?", "The eruption of Tambora in 1815 ...")
    0.5
    """
    words = content_stems(question)
    if not words:
        return 0.0
    return len(words & content_stems(source)) / len(words)


def similarity(a: str, b: str) -> float:
    """Jaccard overlap of content stems: the redundancy measure of the diversity term."""
    wa, wb = content_stems(a), content_stems(b)
    if not wa or not wb:
        return float(filters.normalize(a) == filters.normalize(b))
    return len(wa & wb) / len(wa | wb)


def best_sentence(question: str, passage: str, chunk: Chunk) -> tuple[int, int]:
    """The sentence of ``chunk`` that shares most content words with ``question`` (the chunk if none does)."""
    words = content_stems(question)
    best, best_hits = (chunk.start, chunk.end), 0
    for s, e in chunk.sentences:
        hits = len(words & content_stems(passage[s:e]))
        if hits > best_hits:
            best, best_hits = (s, e), hits
    return best


# --------------------------------------------------------------------------- prompts


def resolve_style(lm, style: str) -> str:
    """The concrete prompt style for ``lm`` (see ``STYLES``); raises QuestionError on a mismatch."""
    if style == "auto":
        if getattr(lm.spec, "adapter", None) or getattr(lm, "remote", False):  # a server takes chat messages
            return "chat"
        return "highlight" if lm.is_seq2seq else "fewshot"
    if style in SEQ2SEQ_STYLES and not lm.is_seq2seq:
        raise QuestionError(f"The '{style}' prompt style is for seq2seq (T5-style) models; "
                            f"'{lm.spec.label}' is a causal LM: choose 'fewshot' or 'chat'.")
    return style


def end_marker(lm) -> str:
    """The text of a token that stops generation for ``lm`` (its end-of-turn or EOS token), or ''."""
    from ..engine.generation import stop_token_ids

    tok = lm.tokenizer
    vocab = tok.get_vocab()
    stops = set(stop_token_ids(lm))
    for marker in END_MARKERS + ((tok.eos_token,) if tok.eos_token else ()):
        if vocab.get(marker) in stops:
            return marker
    return ""


def fewshot_prompt(text: str, answer: str | None = None, end: str = "") -> str:
    """Raw completion prompt: two worked examples (each question closed by ``end``), then ``text``
    waiting for its question.

    >>> fewshot_prompt("Bees dance.").splitlines()[-2:]
    ['Text: Bees dance.', 'Question:']
    """
    parts = [FEWSHOT_INSTRUCTION]
    for shot_text, shot_answer, shot_question in FEWSHOT_SHOTS:
        parts.append(f"Text: {shot_text}\n" + (f"Answer: {shot_answer}\n" if answer is not None else "")
                     + f"Question: {shot_question}{end}\n\n")
    parts.append(f"Text: {text}\n" + (f"Answer: {answer}\n" if answer is not None else "") + "Question:")
    return "".join(parts)


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
    if style == "fewshot":
        return fewshot_prompt(passage[target[0]:target[1]], answer, end_marker(lm))
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


# --------------------------------------------------------------------------- candidates


def first_question(text: str) -> str:
    """The question in a model output: the first line, cut after its first '?', list markers and
    ``Question:``/``Q:`` labels removed. Returns the line as is when it holds no '?'.

    >>> first_question(" What is it? Some chatter.\\nMore")
    'What is it?'
    """
    text = text.replace(HIGHLIGHT, " ")
    text = re.sub(r"^\s*(?:question|q)\s*[:.)]\s*", "", text.strip(), flags=re.IGNORECASE)
    text = text.replace("<sep>", "\n")
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = filters.LIST_MARKER.sub("", line).strip().strip('"').strip()
    if "?" in line:
        line = line[: line.index("?") + 1]
    return line.strip()


def target_units(passage: str, chunk: Chunk) -> list[tuple[int, int]]:
    """Spans a single question may be about: each sentence, joined with the one before it when it
    opens with a pronoun ("It was designed by ...") or is too short to stand alone."""
    units = []
    for i, (s, e) in enumerate(chunk.sentences):
        first = filters.words(passage[s:e])[:1]
        short = len(filters.words(passage[s:e])) < MIN_TARGET_WORDS
        if i > 0 and (short or (first and first[0] in PRONOUN_START)):
            s = chunk.sentences[i - 1][0]
        units.append((s, e))
    long_enough = [u for u in units if len(filters.words(passage[u[0]:u[1]])) >= MIN_TARGET_WORDS]
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
    outputs = generate_batch(lm, None, settings.sampling, batch_size=settings.batch_size, prompts=prompts)
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
    scoring cost 3-5x as much (continuation_logprobs runs prompt + question once per candidate, the
    dominant cost on CPU) without saying anything about the question that its sentence does not."""
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


# --------------------------------------------------------------------------- rule-based fallback

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
    """
    found, seen_keys = [], set()

    def add(text: str, span: tuple[int, int], kind: str) -> None:
        if filters.normalize(text) not in seen_keys:
            seen_keys.add(filters.normalize(text))
            found.append((text, span, kind))

    for s, e in chunk.sentences:
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


def answer_rule_questions(passage: str, unit: tuple[int, int], answer: str,
                          answer_span: tuple[int, int]) -> list[tuple[str, tuple[int, int], str]]:
    """Answer-aware fallback: when the answer opens a sentence (its subject), ask for it.

    >>> p = "Karl von Frisch described the waggle dance."
    >>> answer_rule_questions(p, (0, len(p)), "Karl von Frisch", (0, 15))[0][0]
    'Who or what described the waggle dance?'
    """
    for s, e in split_sentences(passage[unit[0]:unit[1]]):
        start, end = unit[0] + s, unit[0] + e
        if start == answer_span[0] and answer_span[1] < end:
            rest = passage[answer_span[1]:end].strip().rstrip(".!")
            if len(filters.words(rest)) >= 2:
                return [(f"Who or what {rest}?", (start, end), "rule: answer subject")]
    return []


# --------------------------------------------------------------------------- ranking


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


# --------------------------------------------------------------------------- the pipeline


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
    _check_candidates(cands + rules, passage, settings, answer)

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
        raise QuestionError("The passage is empty: paste a text or upload a .txt or .md file.")
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
                      answer: str | None) -> None:
    """Faults that do not depend on the other candidates (duplicates are judged while selecting)."""
    for cand in cands:
        chunk_text = passage[cand.chunk.start:cand.chunk.end]
        cand.grounding = grounding(cand.text, chunk_text)
        cand.faults = filters.question_faults(cand.text, open_only=settings.open_only)
        if cand.source == "model" and cand.grounding < settings.min_grounding and "not a question" not in cand.faults:
            cand.faults.append("not about the passage")
        if answer and cand.source == "model" and filters.normalize(answer) in filters.normalize(cand.text):
            cand.faults.append("gives away the answer")


def _score(lm, style: str, cands: Sequence[_Candidate]) -> None:
    """Each candidate's mean token log-prob under its scoring prompt (:func:`scoring_prompt`): one
    continuation_logprobs call per distinct prompt (per chunk for the whole-chunk styles, per sentence
    for ``fewshot``), over the candidates that passed the filters. Per-sentence prompts instead of one
    per chunk: continuation_logprobs runs prompt + question for every row, so a 300-token chunk
    prompt costs ~5x the tokens of a sentence prompt (measured on the bundled model: 13 s vs 3 s)."""
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


MAX_PASSAGE_BYTES = 2_000_000
"""Largest passage file accepted (the tab caps uploads the same way)."""


def check_size(size: int, name: str = "passage") -> None:
    """Raise QuestionError when a file of ``size`` bytes is over ``MAX_PASSAGE_BYTES``."""
    if size > MAX_PASSAGE_BYTES:
        raise QuestionError(f"{name}: the file is {size / 1e6:.1f} MB; the limit is "
                            f"{MAX_PASSAGE_BYTES / 1e6:.0f} MB. Split it or paste a part.")


def decode_passage(data: bytes, name: str = "passage") -> str:
    """Bytes of a text file -> text; one clear error for empty, oversize, binary or non-UTF-8 input."""
    check_size(len(data), name)
    if b"\x00" in data[:65536]:
        raise QuestionError(f"{name}: this is a binary file, not text. Upload a .txt or .md file.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise QuestionError(f"{name}: the file is not UTF-8 text (invalid byte at position {exc.start}). "
                            "Save it as UTF-8 and upload it again.") from None
    if not text.strip():
        raise QuestionError(f"{name}: the file is empty.")
    return text


if __name__ == "__main__":  # python -m convo.questions: the same as python -m convo questions
    from convo.cli.questions import main

    sys.exit(main())
