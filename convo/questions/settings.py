"""Question-generation settings and records: the modes and prompt styles, the sampling, the worked
few-shot examples, QuestionSettings, Question (what a caller gets), QuestionRun, Chunk and the
internal candidate record.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..data.base import END_MARKERS, FEWSHOT_INSTRUCTION, FEWSHOT_SHOTS  # noqa: F401  (re-exported)
from ..data.sentences import ABBREVIATIONS, MIN_TARGET_WORDS, PRONOUN_START  # noqa: F401  (re-exported)
from ..settings import Sampling

MODES = ("open", "answer", "conversational")
STYLES = ("auto", "fewshot", "chat", "highlight", "prefix")
"""Prompt styles. ``auto``: with an adapter, the style it was trained in (``prompt_style`` in its
``convo_adapter.json``: ``fewshot`` for the ``qg`` task, ``chat`` otherwise and for adapters that
record none); ``chat`` for remote servers, ``highlight`` for seq2seq models, ``fewshot`` for other
causal LMs.

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

CONVERSATION_SHOT = (
    "The Eiffel Tower was completed in 1889 as the entrance arch to the World's Fair in Paris. "
    "It is 330 metres tall and was the tallest structure in the world until 1930.",
    (("When was the Eiffel Tower completed?", "in 1889"), ("Why was it built?", "as the entrance arch to the World's Fair"),
     ("How tall is it?", None)),
)

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
