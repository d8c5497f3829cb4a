"""Jobs (keyword, persona), their items and the sampling a run uses (SynthSampling: the defaults the
tab and CLI show)."""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..engine.hardware import default_batch
from .config import (AGENTS, ConfigError, DEFAULT_AGENT_TEMPLATE, DEFAULT_ASSISTANT_PROMPT, DEFAULT_ROLES,
                     DEFAULT_SCRIPT_TEMPLATE, KEYWORD, KEYWORD_STRATEGIES, KeywordConfig, LINE_TOKENS,
                     MAX_SEEDS_IN_CARD, MESSAGE_TOKENS, PERSONA, PERSONA_FIELDS, Persona, RESTYLE_FIELDS, SCRIPT,
                     SCRIPT_TOKENS, STRATEGIES, TURNS, _check_unique_personas, check_template)


@dataclass(frozen=True)
class Item:
    """One conversation to make: a (seed, persona) or a word, and a sample index. ``key`` is stable across runs."""

    key: str
    index: int
    word: str | None = None
    seed: str | None = None
    persona: Persona | None = None


def item_key(mode: str, source: str, persona: str | None, index: int) -> str:
    """A short stable id for (seed or word, persona, sample index): what resume checks against.

    >>> item_key("keyword", "rain", None, 0) == item_key("keyword", "rain", None, 0)
    True
    """
    raw = json.dumps([mode, source, persona or "", index], ensure_ascii=False)
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()[:16]


@dataclass
class KeywordJob:
    """Keyword mode: one script per word (and sample) from the config's prompt, between two roles."""

    config: KeywordConfig
    roles: tuple[str, str] = DEFAULT_ROLES
    """Speaker labels: the first is written as the user, the second as the assistant."""
    n_per_word: int = 1
    """Conversations to keep per word."""
    max_attempts: int = 4
    """Generations per item before giving up on it (only while sampling; greedy output never changes)."""
    strip_address: bool = True
    """Remove forms of address such as "Teacher, ..." from the messages."""
    strategy: str = TURNS
    """``turns``: the script is written one line per batched step (reliable with small models);
    ``script``: one generation per conversation, parsed into turns (as the earlier llama.cpp scripts)."""
    turns: int = 2
    """Exchanges per conversation with the ``turns`` strategy (the ``script`` one keeps what the model wrote)."""
    line_candidates: int = 1
    """``turns`` strategy, while sampling: lines sampled per step until one names the word (one is kept).
    Before lines were steered towards the word (``generation.Steered``: 46% -> 89% of attempts kept on an
    8-word config with the bundled model, benchmarks/synth_vs_chat_builder.py), 3 raised that share
    from about 50% to 73% but lowered kept conversations per minute on a 2-core CPU (25 vs 30); it
    pays where steering is not applied (a server) and extra rows are cheap."""

    mode = KEYWORD

    def __post_init__(self):
        roles = tuple(r.strip() if isinstance(r, str) else "" for r in self.roles)
        if len(roles) != 2 or not all(roles):
            raise ConfigError("roles: give two speaker names, e.g. STUDENT and TEACHER")
        if roles[0].lower() == roles[1].lower():
            raise ConfigError("roles: the two speakers need different names")
        if any(not re.fullmatch(r"[\w][\w .'-]*", r) for r in roles):
            raise ConfigError("roles: use letters, digits, spaces, dots, apostrophes or hyphens only")
        self.roles = roles
        if self.strategy not in KEYWORD_STRATEGIES:
            raise ConfigError(f"strategy: expected one of {', '.join(KEYWORD_STRATEGIES)}, got {self.strategy!r}")
        _check_range("turns", self.turns, 1, 20)
        _check_range("line_candidates", self.line_candidates, 1, 16)
        _check_range("n_per_word", self.n_per_word, 1, 10_000)
        _check_range("max_attempts", self.max_attempts, 1, 100)

    def items(self, forever: bool = False) -> Iterator[Item]:
        """Sample 0 of every word, then sample 1... (so a batch mixes words); endless with ``forever``."""
        indices = itertools.count() if forever else range(self.n_per_word)
        for index in indices:
            for word in self.config.words:
                yield Item(item_key(KEYWORD, word, None, index), index, word=word)

    def to_config(self) -> dict:
        return {"mode": KEYWORD, **self.config.to_dict(), "roles": list(self.roles), "n_per_word": self.n_per_word,
                "max_attempts": self.max_attempts, "strip_address": self.strip_address, "strategy": self.strategy,
                "turns": self.turns if self.strategy == TURNS else None,
                "line_candidates": self.line_candidates if self.strategy == TURNS else None}

    def settings_meta(self) -> dict:
        return {"mode": KEYWORD, "strategy": self.strategy, "roles": list(self.roles), "config": self.config.name}


@dataclass
class PersonaJob:
    """Persona mode: each seed message role-played by each persona of the grid."""

    seeds: list[str]
    personas: list[Persona]
    turns: int = 3
    """User-assistant exchanges per conversation (a conversation has ``2 * turns`` messages)."""
    strategy: str = AGENTS
    """``agents``: two role-played agents take turns; ``script``: one generation parsed into turns."""
    template: str = ""
    """The user agent's system prompt (agents) or the script instruction (script); empty = the default."""
    assistant_prompt: str = DEFAULT_ASSISTANT_PROMPT
    """The assistant agent's system prompt (agents strategy)."""
    restyle_template: str = ""
    """If set, every message is rewritten with this template (``{message}``), e.g. as a social-media post."""
    restyle_max_chars: int = 280
    """Restyled messages are cut to this many characters, at a sentence end or word boundary (0 = no limit)."""
    samples: int = 1
    """Conversations per (seed, persona)."""
    max_attempts: int = 2
    """Generations per item before giving up on it (only while sampling)."""

    mode = PERSONA

    def __post_init__(self):
        if not self.seeds or not all(isinstance(s, str) and s.strip() for s in self.seeds):
            raise ConfigError("seeds: give at least one seed message")
        self.seeds = list(dict.fromkeys(s.strip() for s in self.seeds))
        if not self.personas:
            raise ConfigError("personas: add at least one motivation and disposition")
        _check_unique_personas(self.personas, "personas")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        _check_range("turns", self.turns, 1, 20)
        _check_range("samples", self.samples, 1, 10_000)
        _check_range("max_attempts", self.max_attempts, 1, 100)
        _check_range("restyle_max_chars", self.restyle_max_chars, 0, 100_000)
        self.template = check_template((self.template or "").strip() or default_template(self.strategy),
                                       PERSONA_FIELDS, "template")
        self.assistant_prompt = (self.assistant_prompt or "").strip()
        self.restyle_template = check_template((self.restyle_template or "").strip(), RESTYLE_FIELDS,
                                               "restyle template")
        if self.restyle_template and "{message}" not in self.restyle_template:
            raise ConfigError("restyle template: it must contain {message}")

    def items(self, forever: bool = False) -> Iterator[Item]:
        indices = itertools.count() if forever else range(self.samples)
        for index in indices:
            for seed in self.seeds:
                for persona in self.personas:
                    yield Item(item_key(PERSONA, seed, persona.label, index), index, seed=seed, persona=persona)

    def values(self, item: Item) -> dict:
        return {**item.persona.values(), "seed": item.seed, "turns": self.turns}

    def to_config(self) -> dict:
        return {"mode": PERSONA, "strategy": self.strategy, "turns": self.turns, "template": self.template,
                "assistant_prompt": self.assistant_prompt if self.strategy == AGENTS else None,
                "restyle_template": self.restyle_template or None, "restyle_max_chars": self.restyle_max_chars,
                "samples": self.samples, "max_attempts": self.max_attempts,
                "personas": [p.to_dict() for p in self.personas],
                "seeds": self.seeds[:MAX_SEEDS_IN_CARD], "seed_count": len(self.seeds)}

    def settings_meta(self) -> dict:
        return {"mode": PERSONA, "strategy": self.strategy, "turns": self.turns,
                "restyled": bool(self.restyle_template)}


Job = KeywordJob | PersonaJob


def default_template(strategy: str) -> str:
    """The generation template a new persona job starts from."""
    return DEFAULT_SCRIPT_TEMPLATE if strategy == SCRIPT else DEFAULT_AGENT_TEMPLATE


def _check_range(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name}: expected a whole number from {low} to {high}, got {value!r}")


@dataclass(frozen=True)
class SynthSampling:
    """How a synthetic run samples and batches: the tab's "Generation settings" and the CLI's flags."""

    temperature: float = 0.7
    """Softmax temperature; 0 means greedy."""
    max_new_tokens: int | None = None
    """Tokens per script, message or line; None picks by strategy (script 160, agents 72, turns 40)."""
    batch_size: int = field(default_factory=default_batch)
    """Conversations generated together (``engine.hardware.default_batch``: 32 on CPUs with AMX tiles, else 8)."""
    seed: int | None = None
    """Random seed for reproducible sampling (None: random)."""


def default_sampling(job: Job, max_new_tokens: int | None = None, temperature: float = SynthSampling.temperature,
                     seed: int | None = None):
    """Sampling that suits the job: a whole script needs more tokens than one message or line. A keyword
    ``turns`` step keeps only the model's first line, so it stops at the line's end (the bundled model, on
    benchmarks/synth_vs_chat_builder.py's config: 34 tokens a line before, 28.5 after).

    >>> default_sampling(KeywordJob(KeywordConfig("d", ["{word}"], ["rain"]))).stop
    ('\\n',)
    """
    from ..settings import Sampling

    budgets = {SCRIPT: SCRIPT_TOKENS, AGENTS: MESSAGE_TOKENS, TURNS: LINE_TOKENS}
    tokens = max_new_tokens or budgets[job.strategy]
    stop = ("\n",) if job.strategy == TURNS else ()
    return Sampling(temperature=temperature, top_p=0.95, top_k=50, max_new_tokens=tokens, repetition_penalty=1.15,
                    seed=seed, stop=stop)
