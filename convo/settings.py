"""Typed settings shared by the app, the CLI, the Python API and the tests.

Each concern has one dataclass, validated on construction, so a bad value fails where it
is made (``Sampling(temperature=-1)`` raises) rather than deep inside a generate call.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

BUNDLED = "bundled"
BUNDLED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The Hub model the bundled GGUF was converted from: what pushed adapters and datasets name for ``bundled``."""
QUANTIZE_CHOICES = ("auto", "none", "8bit", "4bit")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


def default_model_name() -> str:
    """The default model everywhere (app, CLIs, API): ``$CONVO_MODEL`` or the bundled one."""
    return os.environ.get("CONVO_MODEL") or BUNDLED


def cache_dir() -> Path:
    """Where convo keeps what it builds (converted models, the compiled decode step):
    ``$CONVO_CACHE_DIR`` or the user cache dir."""
    import platformdirs

    return Path(os.environ.get("CONVO_CACHE_DIR") or platformdirs.user_cache_dir("convo"))


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and how to place it.

    >>> ModelSpec("bundled").name
    'bundled'
    """

    name: str = BUNDLED
    """``"bundled"`` (SmolLM2-135M-Instruct shipped with convo), a Hub id or a local folder."""
    adapter: str | None = None
    """Optional LoRA adapter on top of the base: a local folder or a Hub id."""
    quantize: str = "auto"
    """``auto`` (4-bit NF4 on CUDA, none elsewhere), ``none``, ``8bit`` or ``4bit`` (bitsandbytes)."""
    dtype: str = "auto"
    """Compute dtype; ``auto`` picks the fastest correct one for the device."""
    device: str = "auto"
    """``auto`` (cuda > mps > cpu), or an explicit torch device string."""
    trust_remote_code: bool = False
    """Run model code from the Hub. Off unless the user turns it on."""

    def __post_init__(self):
        _check(bool(self.name and self.name.strip()), "model name is empty")
        _check(self.quantize in QUANTIZE_CHOICES, f"quantize must be one of {QUANTIZE_CHOICES}, got {self.quantize!r}")
        _check(self.dtype in DTYPE_CHOICES, f"dtype must be one of {DTYPE_CHOICES}, got {self.dtype!r}")
        object.__setattr__(self, "name", self.name.strip())
        if self.adapter is not None:
            object.__setattr__(self, "adapter", self.adapter.strip() or None)

    @property
    def label(self) -> str:
        """A short human-readable name: ``base`` or ``base + adapter``."""
        return self.name if not self.adapter else f"{self.name} + {self.adapter}"


@dataclass(frozen=True)
class Sampling:
    """Decoding settings for one generation. ``temperature=0`` means greedy decoding.

    >>> Sampling(temperature=0).do_sample
    False
    >>> Sampling(stop=["User:"]).stop
    ('User:',)
    """

    temperature: float = 0.7
    """Softmax temperature; 0 means greedy."""
    top_p: float = 0.9
    """Nucleus sampling mass."""
    top_k: int = 50
    """Keep only the k most likely tokens (0 disables)."""
    max_new_tokens: int = 256
    """Upper bound on generated tokens."""
    repetition_penalty: float = 1.1
    """Penalty > 1 discourages repeating tokens."""
    seed: int | None = None
    """Fix the random seed for a reproducible sample."""
    stop: tuple[str, ...] = ()
    """Generation ends at the first of these strings; the reply is cut before it (as the OpenAI API's ``stop``)."""

    def __post_init__(self):
        _check(0 <= self.temperature <= 5, f"temperature must be in [0, 5], got {self.temperature}")
        _check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        _check(self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}")
        _check(1 <= self.max_new_tokens <= 8192, f"max_new_tokens must be in [1, 8192], got {self.max_new_tokens}")
        _check(0.5 <= self.repetition_penalty <= 3, f"repetition_penalty must be in [0.5, 3], got {self.repetition_penalty}")
        _check(isinstance(self.stop, (list, tuple)), f"stop must be a list of strings, got {self.stop!r}")
        _check(len(self.stop) <= 4, f"stop takes at most 4 strings, got {len(self.stop)}")
        for text in self.stop:
            _check(isinstance(text, str) and text != "", f"stop strings must be non-empty strings, got {text!r}")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    def to_dict(self) -> dict:
        """The fields as JSON values (``stop`` as a list), for snapshots, cards and saved configs."""
        return {**asdict(self), "stop": list(self.stop)}

    @classmethod
    def from_dict(cls, data: dict) -> "Sampling":
        """Build from a dict, ignoring unknown keys (e.g. a snapshot from an older version)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})


GREEDY = Sampling(temperature=0.0, repetition_penalty=1.0)

# Chosen defaults for models that ship no recommended sampling. The bundled SmolLM2-135M answered an
# English opener in invented Portuguese or Scandinavian several times in ten at temperature 0.7 with
# repetition penalty 1.1; at a low temperature it stays in the user's language (measured with 20
# English openers: tests/test_chat.py::test_bundled_defaults_answer_english_in_english).
MODEL_SAMPLING = {BUNDLED: Sampling(temperature=0.2, top_p=0.9, top_k=50, repetition_penalty=1.0)}
_RECOMMENDED_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty")


def recommended_sampling(model: str, generation_config: dict | None = None) -> tuple[Sampling, str]:
    """The sampling defaults for ``model`` and where they come from: the values its
    ``generation_config.json`` recommends, else convo's choice for it, else the general defaults.

    >>> recommended_sampling("some/model", {"do_sample": True, "temperature": 0.6, "top_p": 0.95})[0].temperature
    0.6
    """
    config = generation_config or {}
    given = {k: config[k] for k in _RECOMMENDED_KEYS if isinstance(config.get(k), (int, float))}
    if given and config.get("do_sample", True):
        base = MODEL_SAMPLING.get(model, Sampling())
        try:
            return Sampling(**{**base.to_dict(), **given}), "from the model's generation_config.json"
        except ValueError:
            pass  # out-of-range recommendations: fall back to ours
    if model in MODEL_SAMPLING:
        return MODEL_SAMPLING[model], "chosen for this model: it stays in the user's language"
    return Sampling(), "general defaults"


def model_generation_config(model: str) -> dict | None:
    """The model's generation_config.json without loading the model: a local folder's, or the Hub
    cache's copy (no download); None when there is none."""
    path = Path(model) / "generation_config.json"
    if not path.is_file() and "/" in model and not Path(model).exists():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "generation_config.json")
            path = Path(cached) if isinstance(cached, str) else path
        except (ImportError, ValueError):
            return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def model_sampling(model: str) -> Sampling:
    """The sampling a model's replies use unless told otherwise: :func:`recommended_sampling` for it (the
    terminal chat and the Python API used the general defaults, 0.7 and a repetition penalty, where the
    app used the bundled model's own)."""
    return recommended_sampling(model, model_generation_config(model))[0]


@dataclass(frozen=True)
class ChatSettings:
    """How a chat behaves beyond decoding."""

    system_prompt: str = "You are a friendly, curious assistant. Answer briefly and clearly."
    """System message put first in every conversation (empty for none)."""
    curious: bool = True
    """After each reply, suggest follow-up questions the assistant would ask the user."""
    interviewer: bool = False
    """End every reply with the assistant's best question to the user."""
    n_questions: int = 3
    """How many follow-up questions to suggest (at most)."""

    def __post_init__(self):
        _check(0 <= self.n_questions <= 10, f"n_questions must be in [0, 10], got {self.n_questions}")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapter shape (see peft.LoraConfig)."""

    r: int = 16
    """Rank of the update matrices."""
    alpha: int = 32
    """Scaling numerator (scale = alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: str = "all-linear"
    """Which modules get adapters: ``all-linear`` or a comma-separated list of names."""

    def __post_init__(self):
        _check(1 <= self.r <= 1024, f"LoRA r must be in [1, 1024], got {self.r}")
        _check(self.alpha >= 1, f"LoRA alpha must be >= 1, got {self.alpha}")
        _check(0 <= self.dropout < 1, f"LoRA dropout must be in [0, 1), got {self.dropout}")
        _check(bool(self.target_modules.strip()), "LoRA target_modules is empty")
