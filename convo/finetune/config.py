"""Fine-tuning settings: what one adapter run trains (TrainSettings), the files it reads
(FinetuneConfig), what it returns (TrainResult), the job exit codes, and the converters from these
settings to peft's LoraConfig and transformers' TrainingArguments (imported inside the functions).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..data import END_MARKERS, TASKS
from ..engine.loading import ADAPTER_METADATA_FILE
from ..settings import BUNDLED, DTYPE_CHOICES, LoraSettings, ModelSpec

log = logging.getLogger(__package__)  # one logger for the package

Conversation = list[dict]
LogFn = Callable[[dict], None]
StopFn = Callable[[], bool]

METADATA_FILE = ADAPTER_METADATA_FILE
END_OF_TURN_MARKERS = END_MARKERS
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 3


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class TrainSettings:
    """How to train one adapter; the UI, the CLI, the Python API and the tests all build this.

    >>> TrainSettings(max_steps=30, batch_size=4).effective_batch_size
    4
    """

    epochs: float = 3.0
    """Passes over the training examples (ignored when ``max_steps`` is set)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps; overrides ``epochs``."""
    batch_size: int = 8
    """Examples per batch (effective batch per optimizer step = batch_size * grad_accum)."""
    grad_accum: int = 1
    """Batches per optimizer step."""
    micro_batch_size: int | None = None
    """Examples per forward pass: a batch runs as micro-batches whose gradients add up to the batch's
    (the loss is normalised over the whole batch, so a step is the same). None: the whole batch on a
    GPU, 1 on CPU, where activations grow with every example of a pass (the bundled model at 8 x 512
    tokens held 8 GB even with gradient checkpointing, 2 GB one example a pass) while one example of a
    few hundred tokens still keeps the matrix products large, and needs no padding."""
    learning_rate: float = 2e-4
    """Peak learning rate of the LoRA weights (linear warmup, then linear decay)."""
    max_length: int = 512
    """Longest example in tokens; longer ones keep their last ``max_length`` tokens, so the target stays."""
    val_fraction: float = 0.1
    """Share of the examples held out for validation when no validation file is given."""
    eval_every: int = 50
    """Compute the validation loss every N steps."""
    eval_examples: int = 128
    """Validation examples the validation loss is computed on (a fixed sample drawn with ``seed``; 0: all of
    them). The held-out share stays out of training either way; scoring 800 held-out CoQA questions every
    few steps cost more time than training itself."""
    save_every: int = 100
    """Save a resumable checkpoint every N steps."""
    early_stopping_patience: int = 3
    """Stop after this many evaluations without a better validation loss (0: never); the best is kept."""
    seed: int = 42
    """Seed for the LoRA initialisation, the data order and the validation split."""
    qlora: bool | None = None
    """Train on a 4-bit NF4 base (bitsandbytes). None: yes on CUDA, no elsewhere."""
    task: str | None = None
    """qg, cqg, qa, qa_closed or chat; None picks the data format's default (recorded in the adapter)."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """Shape of the adapter."""
    warmup_ratio: float = 0.03
    """Share of the steps spent warming up the learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay of the LoRA weights."""
    group_by_length: bool = True
    """Batch examples of similar length together, so little compute is spent on padding."""
    gradient_checkpointing: bool | None = None
    """Recompute each layer's activations in the backward pass instead of keeping them. None: on, on
    CUDA and on CPU alike: the bundled model at batch 8 x 512 tokens held over 8 GB of activations
    without it (see benchmarks/train_memory.py); off saves the second forward pass (a step costs about
    4 forward passes with it, 3 without)."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep (plus the best one under early stopping)."""
    eval_generations: int = 16
    """Held-out examples to generate for after training (ROUGE-L, BLEU, base-vs-adapter side-by-side); 0 skips."""

    def __post_init__(self):
        if isinstance(self.lora, dict):
            self.lora = LoraSettings(**self.lora)
        _check(self.epochs > 0, f"epochs must be > 0, got {self.epochs}")
        _check(self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        _check(1 <= self.batch_size <= 1024, f"batch_size must be in [1, 1024], got {self.batch_size}")
        _check(1 <= self.grad_accum <= 1024, f"grad_accum must be in [1, 1024], got {self.grad_accum}")
        _check(self.micro_batch_size is None or self.micro_batch_size >= 1,
               f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        _check(0 < self.learning_rate <= 1, f"learning_rate must be in (0, 1], got {self.learning_rate}")
        _check(16 <= self.max_length <= 32768, f"max_length must be in [16, 32768], got {self.max_length}")
        _check(0 <= self.val_fraction <= 0.5, f"val_fraction must be in [0, 0.5], got {self.val_fraction}")
        _check(self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}")
        _check(self.eval_examples >= 0, f"eval_examples must be >= 0, got {self.eval_examples}")
        _check(self.save_every >= 1, f"save_every must be >= 1, got {self.save_every}")
        _check(self.early_stopping_patience >= 0, f"early_stopping_patience must be >= 0, got {self.early_stopping_patience}")
        _check(self.task is None or self.task in TASKS, f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        _check(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        _check(0 <= self.eval_generations <= 1000, f"eval_generations must be in [0, 1000], got {self.eval_generations}")
        # Early stopping keeps the best checkpoint, so a checkpoint must exist at evaluation steps.
        _check(not self.early_stopping_patience or self.save_every % self.eval_every == 0,
               f"save_every ({self.save_every}) must be a multiple of eval_every ({self.eval_every}) "
               "when early stopping is on (early_stopping_patience > 0)")

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.grad_accum

    def micro_batch(self, device: str) -> int:
        """Examples per forward pass on ``device``: ``micro_batch_size`` (or its default), lowered to
        a divisor of ``batch_size`` so every batch splits evenly.

        >>> TrainSettings(batch_size=8).micro_batch("cpu"), TrainSettings(batch_size=6, micro_batch_size=4).micro_batch("cpu")
        (1, 3)
        """
        wanted = self.micro_batch_size or (self.batch_size if device.startswith("cuda") else 1)
        return next(d for d in range(min(wanted, self.batch_size), 0, -1) if self.batch_size % d == 0)

    def use_qlora(self, device: str) -> bool:
        """Whether this run trains on a 4-bit base on ``device``."""
        return self.qlora if self.qlora is not None else device.startswith("cuda")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainSettings":
        """Build from a dict (a saved job config), ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})


@dataclass
class FinetuneConfig:
    """One fine-tuning run from files: what the CLI parses, the tab fills and a job saves as config.json."""

    train_data: str
    """Training data file (CoQA, simplified CoQA, SQuAD, chat JSONL, Alpaca, ShareGPT, prompt/completion or
    preference pairs; JSON, JSON Lines, Parquet, an Excel workbook, CSV or TSV, any of them gzipped)."""
    output_dir: str
    """Where the finished adapter is saved (peft files, tokenizer, card, convo_adapter.json)."""
    model_name: str = BUNDLED
    """Base model: ``bundled``, a Hub id or a local folder."""
    val_data: str | None = None
    """Validation file; None splits ``settings.val_fraction`` off the training data."""
    settings: TrainSettings = field(default_factory=TrainSettings)
    dtype: str = "auto"
    """Compute dtype of the base (see ModelSpec)."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:1..."""
    trust_remote_code: bool = False
    """Run model code from the Hub (off unless asked for)."""
    push_to_hub: str | None = None
    """``user/repo`` to push the adapter to after training (CLI; the token comes from $HF_TOKEN)."""
    private: bool = True
    """Create the Hub repo as private."""
    overwrite: bool = False
    """Replace an adapter already in ``output_dir``."""
    num_processes: int = 1
    """Data-parallel training processes for a job: above 1 the job runs under ``accelerate launch
    --multi_gpu --num_processes N`` (one process per GPU; on CPU they share the cores over gloo) and
    takes every device slot. ``batch_size`` is per process."""

    def __post_init__(self):
        if isinstance(self.settings, dict):
            self.settings = TrainSettings.from_dict(self.settings)
        _check(1 <= self.num_processes <= 64, f"num_processes must be in [1, 64], got {self.num_processes}")
        _check(bool(self.train_data and str(self.train_data).strip()), "train_data is empty")
        _check(bool(self.output_dir and str(self.output_dir).strip()), "output_dir is empty")
        _check(bool(self.model_name and self.model_name.strip()), "model_name is empty")
        _check(self.dtype in DTYPE_CHOICES, f"dtype must be one of {DTYPE_CHOICES}, got {self.dtype!r}")
        _check(not self.push_to_hub or "/" in self.push_to_hub, f"push_to_hub must be 'user/repo', got {self.push_to_hub!r}")

    def spec(self) -> ModelSpec:
        return ModelSpec(self.model_name, dtype=self.dtype, device=self.device, trust_remote_code=self.trust_remote_code)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FinetuneConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def resolved(self) -> "FinetuneConfig":
        """A copy with absolute paths, so a job runs the same from any working directory."""
        absolute = lambda p: str(Path(p).expanduser().resolve()) if p else p  # noqa: E731
        model = self.model_name
        if model != BUNDLED and Path(model).expanduser().exists():
            model = absolute(model)
        return replace(self, train_data=absolute(self.train_data), val_data=absolute(self.val_data),
                       output_dir=absolute(self.output_dir), model_name=model)


@dataclass
class TrainResult:
    """What a training run produced."""

    output_dir: str | None
    """The saved adapter folder (None when the run was cancelled before finishing)."""
    status: str
    """``finished``, ``early_stopped`` or ``cancelled``."""
    steps: int
    max_steps: int
    history: list[dict] = field(default_factory=list)
    """Every log record: step, epoch, loss or eval_loss, learning_rate, eta_s..."""
    metrics: dict = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)
    """Held-out examples with the reference, the base model's and the adapter's output."""
    checkpoint: str | None = None
    """The last checkpoint folder (resume from it)."""

    @property
    def train_losses(self) -> list[tuple[int, float]]:
        return [(r["step"], r["loss"]) for r in self.history if r.get("loss") is not None]

    @property
    def eval_losses(self) -> list[tuple[int, float]]:
        return [(r["step"], r["eval_loss"]) for r in self.history if r.get("eval_loss") is not None]


def target_module_list(lora: LoraSettings) -> str | list[str]:
    """``all-linear`` as is; ``q_proj, v_proj`` -> ``["q_proj", "v_proj"]``."""
    text = lora.target_modules.strip()
    return text if text == "all-linear" else [part.strip() for part in text.split(",") if part.strip()]


def to_lora_config(lora: LoraSettings, task_type: str = "CAUSAL_LM"):
    """Our LoraSettings -> a peft.LoraConfig (pure: nothing is loaded).

    >>> to_lora_config(LoraSettings(r=8)).r
    8
    """
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=target_module_list(lora), bias="none", task_type=task_type)


def to_training_arguments(settings: TrainSettings, checkpoint_dir: str | Path, *, device: str, dtype,
                          has_validation: bool, evaluate_first: bool = True):
    """Our TrainSettings -> transformers.TrainingArguments for one run on ``device``. With validation
    data and ``evaluate_first`` (a fresh run, not a resume) the validation loss is also measured before
    the first step: the base model's (LoRA starts as a no-op), the baseline the adapter's is read against."""
    import torch
    from transformers import TrainingArguments

    cuda = device.startswith("cuda")
    early = bool(settings.early_stopping_patience and has_validation)
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        per_device_train_batch_size=settings.micro_batch(device),
        per_device_eval_batch_size=settings.micro_batch(device),
        gradient_accumulation_steps=settings.grad_accum * settings.batch_size // settings.micro_batch(device),
        learning_rate=settings.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        logging_steps=1,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=settings.eval_every,
        eval_on_start=has_validation and evaluate_first,
        save_strategy="steps",
        save_steps=settings.save_every,
        save_total_limit=settings.keep_checkpoints,
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if has_validation else None,
        greater_is_better=False,
        # Loss only: gathering logits (vocabulary x tokens) for a validation set fills memory fast.
        prediction_loss_only=True,
        # Data-parallel runs (accelerate launch / torchrun): every LoRA weight takes part in every step.
        ddp_find_unused_parameters=False,
        seed=settings.seed,
        data_seed=settings.seed,
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        include_num_input_tokens_seen="non_padding",
        restore_callback_states_from_checkpoint=True,
        # Mixed precision only on CUDA; on CPU the base already runs in its own dtype.
        bf16=cuda and dtype == torch.bfloat16,
        fp16=cuda and dtype == torch.float16,
        use_cpu=device == "cpu",
        dataloader_pin_memory=cuda,
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=True,
    )
