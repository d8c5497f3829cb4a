"""Fine-tuning: LoRA / QLoRA adapters trained on the user's question-answer data, as jobs.

In-process: ``train_adapter(spec, train, valid, TrainSettings(...), "out/adapter")``; from files:
``run_training(FinetuneConfig(...))``. Jobs (a folder, a subprocess, a queue per device) and the
``python -m training.finetune`` CLI live in convo.jobs.

Why one module: settings, labels, training, save/card/push and metrics of one adapter run; the
issue-17 work edits its training format this session, so the split into convo/finetune/ waits for
that to land.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..data import DEFAULT_TASKS, TASKS, DataError, load_examples, split_train_val, validate_file
from ..settings import BUNDLED, DTYPE_CHOICES, LoraSettings, ModelSpec

log = logging.getLogger(__name__)

Conversation = list[dict]
LogFn = Callable[[dict], None]
StopFn = Callable[[], bool]

BUNDLED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The Hub model the bundled GGUF was converted from: what a pushed adapter names as its base."""
METADATA_FILE = "convo_adapter.json"
END_OF_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 3


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


# =========================================================================== settings


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
    """Training data file (CoQA, simplified CoQA, SQuAD or chat JSONL)."""
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


# =========================================================================== converters


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
                          has_validation: bool):
    """Our TrainSettings -> transformers.TrainingArguments for one run on ``device``."""
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


# =========================================================================== examples -> tokens


def assistant_spans(lm, conversation: Conversation) -> tuple[str, list[tuple[int, int]]]:
    """The rendered training text and the character spans of every assistant turn in it.

    A span is found by rendering the conversation up to that turn (with the generation prompt)
    and through it: what lies between is what the model must learn to say, including its
    end-of-turn marker. Templates that do not render prefixes consistently fall back to finding
    the message text in the full rendering.
    """
    from ..engine.generation import render_prompt

    full = render_prompt(lm, conversation, add_generation_prompt=False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for index, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        span = _prefix_span(lm, conversation, index, full) or _search_span(lm, full, message["content"], cursor)
        if span is None or span[0] < cursor:
            raise ValueError(f"the chat template of {lm.spec.name} does not show assistant message {index} "
                             f"({message['content'][:40]!r}) in the rendered text; cannot train on it")
        spans.append(span)
        cursor = span[1]
    return full, spans


def _prefix_span(lm, conversation: Conversation, index: int, full: str) -> tuple[int, int] | None:
    from ..engine.generation import render_prompt

    try:
        before = render_prompt(lm, conversation[:index], add_generation_prompt=True)
        through = render_prompt(lm, conversation[: index + 1], add_generation_prompt=False)
    except Exception:  # e.g. a template that refuses a conversation starting with the assistant
        return None
    if not (full.startswith(through) and through.startswith(before)):
        return None
    # The trailing newline after an end-of-turn marker belongs to the template, not the reply.
    end = len(through.rstrip())
    content = conversation[index]["content"].strip()
    if end <= len(before) or (content and content not in through[len(before):end]):
        return None
    return len(before), end


def _search_span(lm, full: str, content: str, cursor: int) -> tuple[int, int] | None:
    start = full.find(content, cursor)
    if start < 0:
        return None
    end = start + len(content)
    for marker in (lm.tokenizer.eos_token or "", *END_OF_TURN_MARKERS):
        if marker and full.startswith(marker, end):
            return start, end + len(marker)
    return start, end


def encode_example(lm, conversation: Conversation, max_length: int) -> dict[str, list[int]] | None:
    """Token ids and labels of one example: assistant tokens are targets, all others are -100.

    Over-long examples keep their last ``max_length`` tokens (the target stays); returns None
    when no target token is left.
    """
    if lm.is_seq2seq:
        return _encode_seq2seq(lm, conversation, max_length)
    tok = lm.tokenizer
    text, spans = assistant_spans(lm, conversation)
    # Chat templates already contain the BOS/special tokens they need (as generation.py assumes).
    add_special = not getattr(tok, "chat_template", None)
    if getattr(tok, "is_fast", False):
        enc = tok(text, add_special_tokens=add_special, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        labels = [t if _overlaps(start, end, spans) else -100 for t, (start, end) in zip(ids, enc["offset_mapping"])]
    else:
        ids, labels = _encode_segments(tok, text, spans)
    ids, labels = ids[-max_length:], labels[-max_length:]
    if all(label == -100 for label in labels):
        return None
    return {"input_ids": ids, "labels": labels}


def _overlaps(start: int, end: int, spans: Sequence[tuple[int, int]]) -> bool:
    return end > start and any(start < span_end and end > span_start for span_start, span_end in spans)


def _encode_segments(tok, text: str, spans: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Slow tokenizers have no offsets: tokenize prompt and target pieces one by one."""
    ids: list[int] = []
    labels: list[int] = []
    cursor = 0
    for start, end in list(spans) + [(len(text), len(text))]:
        for piece, target in ((text[cursor:start], False), (text[start:end], True)):
            piece_ids = tok(piece, add_special_tokens=False)["input_ids"] if piece else []
            ids += piece_ids
            labels += piece_ids if target else [-100] * len(piece_ids)
        cursor = end
    return ids, labels


def _encode_seq2seq(lm, conversation: Conversation, max_length: int) -> dict[str, list[int]] | None:
    # Encoder-decoder models learn the last assistant turn from everything before it.
    from ..engine.generation import render_prompt

    tok = lm.tokenizer
    source = render_prompt(lm, conversation[:-1])
    ids = tok(source, truncation=True, max_length=max_length)["input_ids"]
    labels = tok(text_target=conversation[-1]["content"], truncation=True, max_length=max_length)["input_ids"]
    return {"input_ids": list(ids), "labels": list(labels)} if labels else None


def encode_examples(lm, examples: Sequence[Conversation], max_length: int) -> tuple[list[dict], int]:
    """Encode many examples; returns the encoded ones and how many were dropped (no target left)."""
    encoded = [encode_example(lm, example, max_length) for example in examples]
    kept = [item for item in encoded if item is not None]
    return kept, len(encoded) - len(kept)


def pad_collator(tokenizer, pad_to_multiple_of: int | None = None, pad_id: int | None = None):
    """transformers' ``DataCollatorForSeq2Seq`` with labels padded by -100, on a private copy of the
    tokenizer that right-pads with ``pad_id`` (default: its pad token, else EOS).

    Padding gets attention 0 and label -100 by position, not by token id, so a tokenizer whose pad
    token is its EOS still learns to stop; the shared tokenizer's padding side (left, for batched
    generation) is left alone.
    """
    import copy

    from transformers import DataCollatorForSeq2Seq

    tok = copy.deepcopy(tokenizer)
    tok.padding_side = "right"
    pad = pad_id if pad_id is not None else tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if tok.pad_token_id != pad:
        tok.pad_token = tok.convert_ids_to_tokens(pad)
    return DataCollatorForSeq2Seq(tok, label_pad_token_id=-100, pad_to_multiple_of=pad_to_multiple_of,
                                  return_tensors="pt")


class EncodedDataset:
    """A list of encoded examples as a map-style dataset (Trainer needs __len__ and __getitem__)."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


# =========================================================================== loss


def next_token_target_mask(labels):
    """True at the positions whose next token is a target: the only places a causal LM's logits
    enter the loss (right-padded batches: the last position never predicts anything)."""
    import torch

    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != -100
    return mask


def targets_only_loss(model, inputs: dict, num_items_in_batch=None):
    """The causal-LM loss of ``inputs`` with logits computed at target positions only; returns (loss, outputs).

    Equal to transformers' own loss (cross-entropy summed over the targets, divided by
    ``num_items_in_batch`` when given, else their mean), but the vocabulary projection runs for
    the targets alone: in question generation a question of ~15 tokens follows a passage of ~400,
    and the full float32 logits of a batch of 8 x 512 over SmolLM2's 49k vocabulary are 0.8 GB
    per copy (the loss keeps three).
    """
    import torch

    labels = inputs["labels"]
    mask = next_token_target_mask(labels)
    outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, logits_to_keep=mask)
    targets = labels[:, 1:][mask[:, :-1]]
    loss = torch.nn.functional.cross_entropy(outputs.logits.float(), targets, reduction="sum")
    return loss / (num_items_in_batch if num_items_in_batch is not None else max(targets.numel(), 1)), outputs


def supports_targets_only_loss(model) -> bool:
    """Whether ``model`` (peft-wrapped or not) is a decoder whose loss is transformers' shifted
    cross-entropy and whose forward takes a boolean ``logits_to_keep`` mask (models built on
    transformers' ``slice_logits_to_keep``); others train with the model's own loss."""
    import inspect

    from transformers.loss.loss_utils import LOSS_MAPPING, ForCausalLMLoss

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "is_encoder_decoder", False):
        return False
    if "logits_to_keep" not in inspect.signature(base.forward).parameters:
        return False
    module = inspect.getmodule(type(base))
    if getattr(module, "slice_logits_to_keep", None) is None:
        return False
    return LOSS_MAPPING.get(getattr(base, "loss_type", None) or "ForCausalLM") is ForCausalLMLoss


def make_trainer(*, targets_only: bool, **kwargs):
    """A transformers.Trainer whose loss (training and validation) uses :func:`targets_only_loss`
    when ``targets_only``; else the plain Trainer."""
    from transformers import Trainer

    class TargetsOnlyTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss, outputs = targets_only_loss(model, inputs, num_items_in_batch)
            # As Trainer.compute_loss: DDP averages gradients, so a loss divided by the token count
            # of all processes is scaled back up by their number.
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            return (loss, outputs) if return_outputs else loss

    return (TargetsOnlyTrainer if targets_only else Trainer)(**kwargs)


def eval_sample(valid: Sequence[Conversation], settings: TrainSettings) -> list[Conversation]:
    """The validation examples the validation loss runs on: all, or ``settings.eval_examples`` of
    them drawn with ``settings.seed`` (the same sample at every evaluation and on resume)."""
    import random

    valid = list(valid)
    if not settings.eval_examples or len(valid) <= settings.eval_examples:
        return valid
    return random.Random(settings.seed).sample(valid, settings.eval_examples)


def plan_time_split(settings: TrainSettings, n_train: int, n_valid: int, num_processes: int = 1) -> dict:
    """How a run's compute divides between training and the validation loss, before it starts.

    Counted in forward passes over one example: a training example costs 3 (forward and backward),
    4 with gradient checkpointing (its forward runs twice); a validation example costs 1. Returns
    ``steps``, ``evaluations``, ``eval_examples`` (per evaluation) and ``train_share`` / ``eval_share``.

    >>> plan = plan_time_split(TrainSettings(max_steps=25, eval_every=5), 7000, 800)
    >>> plan["evaluations"], plan["eval_examples"], round(plan["train_share"], 2)
    (5, 128, 0.56)
    """
    per_step = settings.batch_size * settings.grad_accum * num_processes
    steps = settings.max_steps or max(1, math.ceil(settings.epochs * n_train / per_step))
    eval_examples = min(n_valid, settings.eval_examples or n_valid)
    evaluations = (steps // settings.eval_every + bool(steps % settings.eval_every)) if eval_examples else 0
    train_cost = steps * per_step * (3 if settings.gradient_checkpointing is False else 4)
    eval_cost = evaluations * eval_examples
    total = train_cost + eval_cost
    return {"steps": steps, "evaluations": evaluations, "eval_examples": eval_examples,
            "train_share": train_cost / total, "eval_share": eval_cost / total}


# =========================================================================== training


def process_rank() -> int:
    """This process's rank in a data-parallel run (``accelerate launch`` / ``torchrun`` set RANK); 0 alone."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train together (WORLD_SIZE from the launcher); 1 alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _any_process(flag: bool, device) -> bool:
    """True when ``flag`` is true in any process of a data-parallel run: every process must stop
    after the same step, or the others wait forever for its gradients."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def default_output_dir(base_name: str) -> Path:
    """A fresh folder under ``data_dir()/adapters`` (where the app lists adapters) for a new adapter."""
    from ..store import data_dir

    return data_dir() / "adapters" / f"{slug(Path(base_name).name or base_name)}-{time.strftime('%Y%m%d-%H%M%S')}"


def slug(text: str) -> str:
    """A safe folder name: letters, digits, '-', '_' and '.'.

    >>> slug("Qwen/Qwen2.5 0.5B!")
    'Qwen-Qwen2.5-0.5B'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "adapter"


def training_quantization(spec: ModelSpec, settings: TrainSettings, device: str) -> str | None:
    """4-bit (QLoRA), 8-bit or no quantization for the base: ``settings.qlora`` wins, then ``spec.quantize``."""
    if settings.qlora is not None:
        return "4bit" if settings.qlora else None
    if spec.quantize == "auto":
        return "4bit" if device.startswith("cuda") else None
    return None if spec.quantize == "none" else spec.quantize


def load_base_for_training(spec: ModelSpec, settings: TrainSettings):
    """Load the base (4-bit when QLoRA) outside the shared pool: training wraps and changes it."""
    from ..engine import load_model, pick_device

    _check(not spec.adapter, f"train on a base model, not on one with an adapter (got adapter {spec.adapter!r})")
    device = pick_device(spec.device)
    mode = training_quantization(spec, settings, device)
    return load_model(replace(spec, quantize=mode or "none", device=device))


def attach_lora(lm, settings: TrainSettings):
    """Wrap the loaded base in a trainable LoRA adapter, avoiding the usual k-bit training crashes.

    * k-bit bases go through peft's ``prepare_model_for_kbit_training`` (norms in fp32, frozen base);
    * non-reentrant gradient checkpointing plus input grads, so checkpointed blocks still get
      gradients ("element 0 of tensors does not require grad");
    * LoRA weights stay fp32 (peft's default), so fp16 mixed precision can unscale them.
    """
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = lm.model
    checkpointing = settings.gradient_checkpointing is not False
    kwargs = {"use_reentrant": False}
    model.config.use_cache = False
    if lm.quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing,
                                                gradient_checkpointing_kwargs=kwargs)
    elif checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.enable_input_require_grads()
    task_type = "SEQ_2_SEQ_LM" if lm.is_seq2seq else "CAUSAL_LM"
    return get_peft_model(model, to_lora_config(settings.lora, task_type))


def train_adapter(spec: ModelSpec, train: Sequence[Conversation], valid: Sequence[Conversation] | None,
                  settings: TrainSettings, output_dir: str | Path, *, on_log: LogFn | None = None,
                  should_stop: StopFn | None = None, checkpoint_dir: str | Path | None = None,
                  resume: bool = False, data_info: dict | None = None, overwrite: bool = False) -> TrainResult:
    """Train a LoRA adapter on ``train`` conversations (the last message of each is a target; in a
    multi-turn chat every assistant turn is) and save it to ``output_dir``.

    ``on_log(record)`` gets every log record (step, loss or eval_loss, eta_s...); ``should_stop()``
    is polled after every step: when it says True a checkpoint is saved and training ends with
    status ``cancelled`` (no adapter is written). Checkpoints go to ``checkpoint_dir`` (default:
    ``<output_dir>.checkpoints``); ``resume=True`` continues from the last one there. An adapter
    already in ``output_dir`` is replaced only with ``overwrite=True`` (or when resuming).

    >>> result = train_adapter(ModelSpec("bundled"), train, valid, TrainSettings(max_steps=30), "out/a")  # doctest: +SKIP
    >>> result.output_dir, result.metrics["eval_loss"]                                                # doctest: +SKIP
    """
    import torch
    from transformers import EarlyStoppingCallback, PrinterCallback, set_seed

    output_dir = Path(output_dir)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else output_dir.with_name(output_dir.name + ".checkpoints")
    _check(bool(train), "no training examples")
    _check(overwrite or resume or not (output_dir / "adapter_config.json").exists(),
           f"{output_dir} already holds an adapter: choose another output folder (or overwrite it)")
    valid = list(valid or [])
    set_seed(settings.seed)
    lm = load_base_for_training(spec, settings)
    max_length = min(settings.max_length, lm.context_length)
    train_items, dropped = encode_examples(lm, train, max_length)
    valid_items, _ = encode_examples(lm, eval_sample(valid, settings), max_length)
    _check(bool(train_items), "no training example has a target token left after truncation")
    peft_model = attach_lora(lm, settings)
    lm = replace(lm, model=peft_model)
    checkpoint = _prepare_checkpoints(checkpoint_dir, resume)
    args = to_training_arguments(settings, checkpoint_dir, device=lm.device, dtype=_base_dtype(lm),
                                 has_validation=bool(valid_items))
    main = process_rank() == 0  # in a data-parallel run only rank 0 reports and writes files
    progress = _ProgressCallback.make(on_log if main else None, should_stop)
    callbacks = [progress]
    if args.load_best_model_at_end:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience))
    trainer = make_trainer(targets_only=supports_targets_only_loss(peft_model), model=peft_model, args=args,
                           train_dataset=EncodedDataset(train_items),
                           eval_dataset=EncodedDataset(valid_items) if valid_items else None,
                           data_collator=pad_collator(lm.tokenizer, 8 if lm.device.startswith("cuda") else None),
                           processing_class=lm.tokenizer, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # our on_log reports progress; no raw dicts on stdout
    if should_stop is not None and _any_process(should_stop(), args.device):
        # Cancelled while loading and encoding: stop now rather than after a first step (slow on a busy CPU).
        return TrainResult(None, "cancelled", checkpoint_step(checkpoint) if checkpoint else 0,
                           max(args.max_steps, 0), checkpoint=last_checkpoint(checkpoint_dir))
    try:
        output = trainer.train(resume_from_checkpoint=checkpoint)
    except TrainingCancelled:  # a stop during validation: keep the steps trained so far
        trainer._save_checkpoint(trainer.model, trial=None)
    state = trainer.state
    saved_checkpoint = last_checkpoint(checkpoint_dir)
    if progress.stopped:
        return TrainResult(None, "cancelled", state.global_step, state.max_steps, progress.history,
                           checkpoint=saved_checkpoint)
    status = "early_stopped" if state.global_step < state.max_steps else "finished"
    metrics = {"train_loss": round(output.training_loss, 4), "steps": state.global_step,
               "epochs": round(state.epoch or 0, 3), "train_tokens": int(state.num_input_tokens_seen),
               "train_runtime_s": round(output.metrics.get("train_runtime", 0.0), 1),
               "dropped_examples": dropped}
    if valid_items:
        metrics["eval_loss"] = round(_final_eval_loss(trainer, progress.history), 4)
    peft_model.config.use_cache = True
    if not main:
        return TrainResult(str(output_dir), status, state.global_step, state.max_steps, progress.history, metrics,
                           checkpoint=saved_checkpoint)
    samples = []
    if valid and settings.eval_generations:
        generated, samples = compare_with_base(lm, valid[: settings.eval_generations], settings.task)
        metrics.update(generated)
    info = data_info or _examples_info(train, valid)
    hyper = _hyperparameters(settings, lm, len(train_items), len(valid_items))
    saved = save_adapter(peft_model, lm.tokenizer, output_dir, base_model=spec.name, task=settings.task,
                         data_info=info, hyperparameters=hyper, metrics=metrics, samples=samples,
                         staging=checkpoint_dir / "adapter.partial")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return TrainResult(str(saved), status, state.global_step, state.max_steps, progress.history, metrics, samples,
                       checkpoint=saved_checkpoint)


def _final_eval_loss(trainer, history: list[dict]) -> float:
    """Validation loss of the adapter being saved: the last evaluation when it ran at the final
    step on the final weights, else a fresh one (early stopping may have reloaded a best checkpoint)."""
    state = trainer.state
    evals = [r for r in history if r.get("eval_loss") is not None]
    if not trainer.args.load_best_model_at_end and evals and evals[-1]["step"] == state.global_step:
        return evals[-1]["eval_loss"]
    progress = next(c for c in trainer.callback_handler.callbacks if hasattr(c, "history"))
    progress.quiet = True  # a check of the saved weights, not a point of the training curve
    return trainer.evaluate()["eval_loss"]


def _base_dtype(lm):
    import torch

    config_dtype = getattr(lm.model.config, "dtype", None) or getattr(lm.model.config, "torch_dtype", None)
    return config_dtype if isinstance(config_dtype, torch.dtype) else torch.float32


def _prepare_checkpoints(checkpoint_dir: Path, resume: bool) -> str | None:
    """The checkpoint to resume from, or None; a fresh run first clears old checkpoints, so two
    runs never mix in one folder."""
    last = last_checkpoint(checkpoint_dir)
    if resume:
        if last is None:
            log.warning("No checkpoint in %s: starting from the beginning", checkpoint_dir)
        return last
    for old in checkpoint_dir.glob("checkpoint-*") if process_rank() == 0 else ():
        shutil.rmtree(old, ignore_errors=True)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return None


def last_checkpoint(checkpoint_dir: Path) -> str | None:
    """The newest complete checkpoint folder (one with saved trainer state).

    Not ``transformers.trainer_utils.get_last_checkpoint``: that returns the newest ``checkpoint-N``
    folder even when a kill cut its save short, and resuming from it fails; this skips to the last
    complete one.
    """
    found = []
    for folder in Path(checkpoint_dir).glob("checkpoint-*"):
        if folder.name.split("-")[-1].isdigit() and (folder / "trainer_state.json").is_file():
            found.append((int(folder.name.split("-")[-1]), folder))
    return str(max(found)[1]) if found else None


def checkpoint_step(checkpoint: str | Path | None) -> int:
    """The global step a checkpoint folder was saved at (0 for None)."""
    return int(Path(checkpoint).name.split("-")[-1]) if checkpoint else 0


def _hyperparameters(settings: TrainSettings, lm, n_train: int, n_valid: int) -> dict:
    flat = {k: v for k, v in settings.to_dict().items() if k != "lora"}
    flat.update({f"lora_{k}": v for k, v in asdict(settings.lora).items()})
    flat.update(quantization=lm.quantized or "none", device=lm.device, dtype=str(_base_dtype(lm)).replace("torch.", ""),
                train_examples=n_train, validation_examples=n_valid, trainer="transformers.Trainer")
    return flat


def _examples_info(train: Sequence[Conversation], valid: Sequence[Conversation]) -> dict:
    """Fingerprint of in-memory examples (the file path API passes the file's own sha256)."""
    digest = hashlib.sha256(json.dumps(list(train), ensure_ascii=False, sort_keys=True).encode()).hexdigest()
    return {"train_file": "(in-memory examples)", "train_sha256": digest,
            "counts": {"train_examples": len(train), "validation_examples": len(valid)}}


class TrainingCancelled(Exception):
    """Raised between validation batches when a stop was asked for (evaluation has no stop flag)."""


class _ProgressCallback:
    """Turns Trainer events into log records with an ETA, and honours a stop request."""

    @staticmethod
    def make(on_log: LogFn | None, should_stop: StopFn | None):
        from transformers import TrainerCallback

        class ProgressCallback(TrainerCallback):
            def __init__(self):
                self.history: list[dict] = []
                self.stopped = False
                self.quiet = False
                self.started = time.monotonic()
                self.first_step = 0
                self.eval_batch = 0  # validation batches done in the current pass
                self.reported = 0.0  # when the validation progress was last reported

            def on_train_begin(self, args, state, control, **kwargs):
                self.started = time.monotonic()
                self.first_step = state.global_step

            def on_step_end(self, args, state, control, **kwargs):
                self.eval_batch = 0
                if should_stop is not None and _any_process(should_stop(), args.device):
                    # Save where we are, then stop: the checkpoint is what a resume continues from.
                    # No validation first: a pass over a large validation set can take many minutes.
                    control.should_save = True
                    control.should_evaluate = False
                    control.should_training_stop = True
                    self.stopped = True

            def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
                """Between validation batches: obey a stop, and report the validation's own progress."""
                if should_stop is not None and should_stop():
                    self.stopped = True
                    raise TrainingCancelled(state.global_step)
                self.eval_batch += 1
                total = len(eval_dataloader) if eval_dataloader is not None else None
                now = time.monotonic()
                if on_log is not None and not self.quiet and (now - self.reported >= 1.0
                                                               or self.eval_batch == total):
                    self.reported = now
                    on_log({"phase": "validating", "step": state.global_step, "max_steps": state.max_steps,
                            "eval_batch": self.eval_batch, "eval_batches": total})

            def on_log(self, args, state, control, logs=None, **kwargs):
                logs = logs or {}
                if self.quiet or ("loss" not in logs and "eval_loss" not in logs):
                    return
                record = self.record(state, logs)
                self.history.append(record)
                if on_log is not None:
                    on_log(record)

            def record(self, state, logs: dict) -> dict:
                elapsed = time.monotonic() - self.started
                done = state.global_step - self.first_step
                eta = elapsed / done * (state.max_steps - state.global_step) if done > 0 else None
                record = {"step": state.global_step, "max_steps": state.max_steps,
                          "epoch": round(state.epoch or 0.0, 4), "elapsed_s": round(elapsed, 2),
                          "eta_s": round(eta, 1) if eta is not None else None, "time": round(time.time(), 2)}
                for key in ("loss", "eval_loss", "learning_rate", "grad_norm"):
                    if logs.get(key) is not None:
                        record[key] = float(logs[key])
                return record

        return ProgressCallback()


# =========================================================================== saving


def save_adapter(peft_model, tokenizer, output_dir: str | Path, *, base_model: str, task: str | None,
                 data_info: dict, hyperparameters: dict, metrics: dict, samples: list[dict] | None = None,
                 staging: str | Path | None = None, repo_id: str | None = None) -> Path:
    """Write the adapter folder: peft files, tokenizer, ``convo_adapter.json`` and a README.md card.

    Everything is written to ``staging`` first and moved into place at the end, so a crash never
    leaves a half-written adapter where the app lists adapters.
    """
    output_dir = Path(output_dir)
    staging = Path(staging) if staging else output_dir.with_name(f".{output_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    peft_model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    _set_base_in_adapter_config(staging / "adapter_config.json", base_model)
    metadata = {"base_model": base_model, "task": task, **data_info, "hyperparameters": hyperparameters,
                "metrics": metrics, "samples": samples or [], "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2, ensure_ascii=False))
    write_card(staging, repo_id or f"local/{slug(output_dir.name)}")
    _move_into_place(staging, output_dir)
    return output_dir


def hub_base_model(base_model: str) -> str:
    """What another tool should load as the base: the Hub id for ``bundled``, else the name given."""
    return BUNDLED_HUB_ID if base_model == BUNDLED else base_model


def _set_base_in_adapter_config(config_path: Path, base_model: str) -> None:
    # peft records the folder the base was read from (for "bundled", a path in this user's cache);
    # record a name that means something on another machine instead.
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = hub_base_model(base_model)
    config_path.write_text(json.dumps(config, indent=2))


def _move_into_place(staging: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    try:
        shutil.move(str(staging), str(target))
    except BaseException:
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_metadata(adapter_dir: str | Path) -> dict:
    """The ``convo_adapter.json`` of an adapter folder ({} when there is none)."""
    path = Path(adapter_dir) / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_card(adapter_dir: str | Path, repo_id: str) -> str:
    """(Re)write the adapter's README.md for ``repo_id`` from its ``convo_adapter.json``."""
    from ..hub import adapter_card

    meta = read_metadata(adapter_dir)
    card = adapter_card(repo_id=repo_id, base_model=hub_base_model(meta.get("base_model", "")),
                        data_file_name=meta.get("train_file", ""), data_sha256=meta.get("train_sha256", ""),
                        counts=meta.get("counts", {}), hyperparameters=meta.get("hyperparameters", {}),
                        metrics=meta.get("metrics", {}))
    (Path(adapter_dir) / "README.md").write_text(card)
    return card


def push_adapter_to_hub(adapter_dir: str | Path, repo_id: str, *, token: str | None, private: bool = True) -> str:
    """Rewrite the card for ``repo_id`` and upload only the adapter files and the card; return the URL.

    The token is used for this call only (convo.hub never stores or logs it).
    """
    from ..hub import HubError, push_adapter, validate_repo_id

    repo_id = validate_repo_id(repo_id)
    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise HubError(f"No adapter_config.json in {adapter_dir}: train an adapter first.")
    write_card(adapter_dir, repo_id)
    return push_adapter(adapter_dir, repo_id, token=token, private=private)


# =========================================================================== evaluation


def _metric_words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (longest common subsequence of lower-cased words and punctuation), in [0, 1].

    >>> rouge_l("where did marta live?", "Where did Marta live?")
    1.0
    """
    cand, ref = _metric_words(candidate), _metric_words(reference)
    lcs = _lcs_length(cand, ref)
    if not lcs:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def bleu(candidates: Sequence[str], references: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU-4 in [0, 1] with add-one smoothing of the 2- to 4-gram precisions (Lin & Och
    2004), so short questions that share no 4-gram still score above zero.

    >>> round(bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 3)
    1.0
    """
    _check(len(candidates) == len(references), "bleu needs one reference per candidate")
    matches, totals = [0] * max_n, [0] * max_n
    cand_len = ref_len = 0
    for candidate, reference in zip(candidates, references):
        cand, ref = _metric_words(candidate), _metric_words(reference)
        cand_len, ref_len = cand_len + len(cand), ref_len + len(ref)
        for n in range(1, max_n + 1):
            cand_grams, ref_grams = _ngrams(cand, n), _ngrams(ref, n)
            matches[n - 1] += sum(min(count, ref_grams[gram]) for gram, count in cand_grams.items())
            totals[n - 1] += max(len(cand) - n + 1, 0)
    if not cand_len or not matches[0]:
        return 0.0
    smooth = [0] + [1] * (max_n - 1)
    log_precision = sum(math.log((m + s) / (t + s)) for m, t, s in zip(matches, totals, smooth)) / max_n
    brevity = 1.0 if cand_len > ref_len else math.exp(1 - ref_len / cand_len)
    return brevity * math.exp(log_precision)


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def eval_sampling(task: str | None):
    """Greedy decoding long enough for the task's targets."""
    from ..settings import Sampling

    return Sampling(temperature=0.0, repetition_penalty=1.0, max_new_tokens=160 if task == "chat" else 64)


def generation_scores(outputs: Sequence[str], references: Sequence[str], prefix: str = "") -> dict:
    """ROUGE-L (mean) and corpus BLEU of outputs against references, rounded."""
    mean_rouge = sum(rouge_l(o, r) for o, r in zip(outputs, references)) / max(len(outputs), 1)
    return {f"{prefix}rouge_l": round(mean_rouge, 4), f"{prefix}bleu": round(bleu(outputs, references), 4)}


def compare_with_base(lm, examples: Sequence[Conversation], task: str | None,
                      n_samples: int = 4) -> tuple[dict, list[dict]]:
    """Generate for held-out examples with the adapter and with the adapter switched off.

    ``lm.model`` is a peft model. Returns the metrics (``rouge_l``, ``bleu``, ``base_rouge_l``,
    ``base_bleu``) and a side-by-side of the first ``n_samples`` examples.
    """
    from ..engine.generation import generate_batch

    prompts = [example[:-1] for example in examples]
    references = [example[-1]["content"] for example in examples]
    sampling = eval_sampling(task)
    lm.model.eval()
    adapter_out = generate_batch(lm, prompts, sampling, batch_size=8)
    with lm.model.disable_adapter():
        base_out = generate_batch(lm, prompts, sampling, batch_size=8)
    metrics = {**generation_scores(adapter_out, references), **generation_scores(base_out, references, "base_"),
               "generated_examples": len(examples)}
    samples = [{"prompt": prompt_text(p), "reference": r, "base": b, "adapter": a}
               for p, r, b, a in list(zip(prompts, references, base_out, adapter_out))[:n_samples]]
    return metrics, samples


def prompt_text(messages: Conversation) -> str:
    """The last user message of a prompt: the passage and question a person wants to see."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else (messages[-1]["content"] if messages else "")


def passage_prompt(text: str, task: str | None) -> Conversation:
    """The prompt a task's adapter was trained on, for a passage a person pasted.

    For ``qa`` the last line is the question and the lines above it the passage.

    >>> passage_prompt("Cats purr.", "qg")[-1]["content"]
    'Passage:\nCats purr.'
    """
    from ..data import cqg_prompt, qa_closed_prompt, qa_prompt, qg_prompt

    text = text.strip()
    if task == "qa":
        passage, _, question = text.rpartition("\n")
        _check(bool(passage.strip() and question.strip()),
               "for question answering, put the passage first and the question on the last line")
        return qa_prompt(passage.strip(), question.strip())
    if task == "cqg":
        return cqg_prompt(text)
    if task == "qa_closed":
        return qa_closed_prompt(text)
    if task == "chat":
        return [{"role": "user", "content": text}]
    return qg_prompt(text)


def compare_on_passages(base: str, adapter_dir: str | Path, texts: Sequence[str], task: str | None, *,
                        quantize: str = "auto") -> list[dict]:
    """Greedy outputs of the base model and of base + adapter for each text (shared model pool)."""
    from ..engine.generation import generate_batch
    from ..engine import get_model

    prompts = [passage_prompt(text, task) for text in texts]
    sampling = eval_sampling(task)
    base_out = generate_batch(get_model(ModelSpec(base, quantize=quantize)), prompts, sampling)
    tuned_out = generate_batch(get_model(ModelSpec(base, adapter=str(adapter_dir), quantize=quantize)), prompts, sampling)
    return [{"prompt": text, "base": b, "adapter": a} for text, b, a in zip(texts, base_out, tuned_out)]


def validation_loss(lm, examples: Sequence[Conversation], max_length: int = 512, batch_size: int = 8) -> float:
    """Mean loss per target token of ``examples`` under a loaded model (no Trainer needed)."""
    import torch

    items, _ = encode_examples(lm, examples, min(max_length, lm.context_length))
    _check(bool(items), "no example has a target token")
    tok = lm.tokenizer
    collate = pad_collator(tok)
    total, count = 0.0, 0
    for start in range(0, len(items), batch_size):
        batch = {k: v.to(lm.model.device) for k, v in collate(items[start:start + batch_size]).items()}
        with torch.inference_mode():
            logits = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              **({"labels": batch["labels"]} if lm.is_seq2seq else {})).logits.float()
        labels = batch["labels"] if lm.is_seq2seq else batch["labels"][:, 1:]
        logits = logits if lm.is_seq2seq else logits[:, :-1]
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="sum")
        total, count = total + losses.item(), count + int((labels != -100).sum())
    return total / count


def evaluate_adapter(adapter_dir: str | Path, data_path: str | Path, *, task: str | None = None,
                     base: str | None = None, max_examples: int = 64, compare_base: bool = False,
                     dtype: str = "auto", device: str = "auto") -> dict:
    """Validation loss, ROUGE-L and BLEU of a saved adapter on a data file (``training.evaluate``).

    The base comes from the adapter's ``convo_adapter.json`` unless ``base`` is given; with
    ``compare_base`` the base model is scored too (``base_*`` keys).
    """
    from ..engine.generation import generate_batch
    from ..engine import adapter_base, get_model

    meta = read_metadata(adapter_dir)
    base = base or adapter_base(adapter_dir)
    _check(bool(base), f"{adapter_dir} does not say which base model it was trained on: pass base")
    task = task or meta.get("task") or DEFAULT_TASKS[_report_or_raise(data_path).format]
    examples, report = load_examples(data_path, task)
    examples = examples[:max_examples]
    models = {"": get_model(ModelSpec(base, adapter=str(adapter_dir), dtype=dtype, device=device))}
    if compare_base:
        models["base_"] = get_model(ModelSpec(base, dtype=dtype, device=device))
    max_length = meta.get("hyperparameters", {}).get("max_length", 512)
    result = {"adapter": str(adapter_dir), "base_model": base, "data": str(data_path), "data_sha256": report.sha256,
              "task": task, "examples": len(examples)}
    references = [example[-1]["content"] for example in examples]
    for prefix, lm in models.items():
        result[f"{prefix}eval_loss"] = round(validation_loss(lm, examples, max_length), 4)
        outputs = generate_batch(lm, [example[:-1] for example in examples], eval_sampling(task))
        result.update(generation_scores(outputs, references, prefix))
    return result


def _report_or_raise(path: str | Path):
    report = validate_file(path)
    if not report.ok:
        raise DataError(report)
    return report


# =========================================================================== from files


@dataclass
class TrainingData:
    """Examples read from the data files, ready for train_adapter."""

    train: list[Conversation]
    valid: list[Conversation]
    task: str
    info: dict
    """File names, sha256 digests and counts (for convo_adapter.json and the card)."""


def load_training_data(config: FinetuneConfig) -> TrainingData:
    """Validate and read the data files; raises DataError naming the first fault of a bad file."""
    report = validate_file(config.train_data)
    if not report.ok:
        raise DataError(report)
    task = config.settings.task or DEFAULT_TASKS[report.format]
    train, report = load_examples(config.train_data, task)
    _warn_skipped(report)
    info = {"train_file": Path(config.train_data).name, "train_sha256": report.sha256}
    if config.val_data:
        valid, val_report = load_examples(config.val_data, task)
        _warn_skipped(val_report)
        info.update(val_file=Path(config.val_data).name, val_sha256=val_report.sha256)
    else:
        train, valid = split_train_val(train, config.settings.val_fraction, config.settings.seed)
    info["counts"] = {"format": report.format, "records": report.records, "passages": report.passages,
                      "questions": report.questions, "conversations": report.conversations,
                      "skipped_records": report.skipped, "train_examples": len(train),
                      "validation_examples": len(valid)}
    return TrainingData(train, valid, task, info)


def _warn_skipped(report) -> None:
    # A usable file may still have faulty records: they are skipped, and the person is told which.
    for fault in report.faults[:20]:
        log.warning("%s: %s", report.name, fault)
    if len(report.faults) > 20:
        log.warning("%s: ... and %d more faults", report.name, len(report.faults) - 20)


def run_training(config: FinetuneConfig, *, checkpoint_dir: str | Path | None = None, resume: bool = False,
                 on_log: LogFn | None = None, should_stop: StopFn | None = None) -> TrainResult:
    """Read the files of ``config``, train and save the adapter to ``config.output_dir``."""
    config = config.resolved()
    data = load_training_data(config)
    settings = replace(config.settings, task=data.task)
    return train_adapter(config.spec(), data.train, data.valid, settings, config.output_dir, on_log=on_log,
                         should_stop=should_stop, checkpoint_dir=checkpoint_dir, resume=resume,
                         data_info=data.info, overwrite=config.overwrite)
