"""Training one adapter: the targets-only loss and the Trainer, the time split of a run, the base
model and its LoRA layers, checkpoints and resuming, progress callbacks and cancelling.
``train_adapter(spec, train, valid, TrainSettings(...), "out/adapter")`` is the entry point.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from ..settings import ModelSpec
from .config import (Conversation, LogFn, StopFn, TrainResult, TrainSettings, _check, log, to_lora_config,
                     to_training_arguments)
from .encode import EncodedDataset, pad_collator
from .evaluate import compare_with_base
from .save import save_adapter, slug


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
    4 with gradient checkpointing (its forward runs twice); a validation example costs 1. Evaluations
    are every ``eval_every`` steps, at the last step, and once before the first (the base model's).
    Returns ``steps``, ``evaluations``, ``eval_examples`` (per evaluation) and ``train_share`` /
    ``eval_share``.

    >>> plan = plan_time_split(TrainSettings(max_steps=25, eval_every=5), 7000, 800)
    >>> plan["evaluations"], plan["eval_examples"], round(plan["train_share"], 2)
    (6, 128, 0.51)
    """
    per_step = settings.batch_size * settings.grad_accum * num_processes
    steps = settings.max_steps or max(1, math.ceil(settings.epochs * n_train / per_step))
    eval_examples = min(n_valid, settings.eval_examples or n_valid)
    evaluations = (1 + steps // settings.eval_every + bool(steps % settings.eval_every)) if eval_examples else 0
    train_cost = steps * per_step * (3 if settings.gradient_checkpointing is False else 4)
    eval_cost = evaluations * eval_examples
    total = train_cost + eval_cost
    return {"steps": steps, "evaluations": evaluations, "eval_examples": eval_examples,
            "train_share": train_cost / total, "eval_share": eval_cost / total}


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
    return load_model(replace(spec, quantize=mode or "none", device=device), for_decoding=False)


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
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5's name (the old one warns)
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.enable_input_require_grads()
    task_type = "SEQ_2_SEQ_LM" if lm.is_seq2seq else "CAUSAL_LM"
    with warnings.catch_warnings():  # peft 0.21 asks for the old name, which printed a FutureWarning into every job's log
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
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
    main = process_rank() == 0  # in a data-parallel run only rank 0 reports and writes files
    report = on_log if main else None
    if report is not None:
        report({"phase": "loading", "model": spec.name})
    lm = load_base_for_training(spec, settings)
    max_length = min(settings.max_length, lm.context_length)
    try:
        train_items = EncodedDataset.encode(lm, train, max_length, _encoding_progress("training", report, should_stop))
        valid_items = EncodedDataset.encode(lm, eval_sample(valid, settings), max_length,
                                            _encoding_progress("validation", report, should_stop))
    except TrainingCancelled:  # nothing trained yet; a resumed run keeps its checkpoints
        kept = last_checkpoint(checkpoint_dir) if resume else None
        return TrainResult(None, "cancelled", checkpoint_step(kept) if kept else 0, 0, checkpoint=kept)
    _check(len(train_items) > 0, "no training example has a target token left after truncation")
    peft_model = attach_lora(lm, settings)
    lm = replace(lm, model=peft_model)
    checkpoint = _prepare_checkpoints(checkpoint_dir, resume)
    args = to_training_arguments(settings, checkpoint_dir, device=lm.device, dtype=_base_dtype(lm),
                                 has_validation=len(valid_items) > 0, evaluate_first=checkpoint is None)
    progress = _ProgressCallback.make(report, should_stop)
    callbacks = [progress]
    if args.load_best_model_at_end:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=settings.early_stopping_patience))
    trainer = make_trainer(targets_only=supports_targets_only_loss(peft_model), model=peft_model, args=args,
                           train_dataset=train_items, eval_dataset=valid_items if len(valid_items) else None,
                           data_collator=pad_collator(lm.tokenizer, 8 if lm.device.startswith("cuda") else None),
                           processing_class=lm.tokenizer, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # our on_log reports progress; no raw dicts on stdout
    if should_stop is not None and _any_process(should_stop(), args.device):
        # Cancelled while loading and encoding: stop now rather than after a first step (slow on a busy CPU).
        return TrainResult(None, "cancelled", checkpoint_step(checkpoint) if checkpoint else 0,
                           max(args.max_steps, 0), checkpoint=last_checkpoint(checkpoint_dir))
    try:
        output = trainer.train(resume_from_checkpoint=checkpoint)
    except TrainingCancelled:  # a stop during validation: keep the steps trained so far (if any)
        if trainer.state.global_step:
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
               "dropped_examples": train_items.dropped}
    if len(valid_items):
        metrics["eval_loss"] = round(_final_eval_loss(trainer, progress.history), 4)
        # the evaluation before the first step (kept in the trainer state, so a resumed run has it too)
        base = [r["eval_loss"] for r in state.log_history if r.get("step") == 0 and "eval_loss" in r]
        if base:
            metrics["base_eval_loss"] = round(base[0], 4)
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


def _encoding_progress(split: str, report: LogFn | None, should_stop: StopFn | None):
    """``EncodedDataset.encode``'s progress callback: a ``{"phase": "encoding"}`` record for the job's
    status, and a stop request obeyed between examples. Only in a run of one process: the processes of
    a data-parallel run must agree to stop (``_any_process``), which they can only do at a step."""
    stop = should_stop if world_size() == 1 else None

    def progress(done: int, total: int) -> None:
        # between examples only (not at the first or the last: a stop then is seen by the check
        # before training, and the count of polls stays what it was for a short encoding)
        if stop is not None and 0 < done < total and stop():
            raise TrainingCancelled(0)
        if report is not None:
            report({"phase": "encoding", "split": split, "done": done, "total": total})

    return progress


def _final_eval_loss(trainer, history: list[dict]) -> float:
    """Validation loss of the adapter being saved: the last evaluation when it ran at the final
    step on the final weights, else a fresh one. That is the curve's last point, unless early stopping
    reloaded a best checkpoint: then it checks earlier weights, and plotted at the last step it would lie."""
    state = trainer.state
    evals = [r for r in history if r.get("eval_loss") is not None]
    if not trainer.args.load_best_model_at_end and evals and evals[-1]["step"] == state.global_step:
        return evals[-1]["eval_loss"]
    progress = next(c for c in trainer.callback_handler.callbacks if hasattr(c, "history"))
    progress.quiet = trainer.args.load_best_model_at_end
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
    # what the run used: "auto" where convo chose (the card showed None), no epochs where max_steps
    # ended the run (the card said 3 epochs for a run of 2 steps; the metrics give the epochs run)
    flat = {k: "auto" if v is None else v for k, v in settings.to_dict().items()
            if k != "lora" and not (k == "epochs" and settings.max_steps)}
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
    """Turns Trainer events into log records with an ETA, and honours a stop request.

    The ETA counts steps and validation passes apart: the steps left at the mean time of a step, and
    the validation passes left at the mean time of a pass. One rate for both read the base model's
    validation before step 1 as part of the first step's time, so the first ETAs of a run with a
    long validation came out several times too long."""

    @staticmethod
    def make(on_log: LogFn | None, should_stop: StopFn | None, clock: Callable[[], float] = time.monotonic):
        from transformers import TrainerCallback

        class ProgressCallback(TrainerCallback):
            def __init__(self):
                self.history: list[dict] = []
                self.stopped = False
                self.quiet = False
                self.started = clock()
                self.first_step = 0
                self.eval_batch = 0  # validation batches done in the current pass
                self.reported = 0.0  # when the validation progress was last reported
                self.eval_began: float | None = None  # when the validation pass under way began
                self.eval_s = 0.0  # seconds of the validation passes done
                self.evals = 0  # validation passes done

            def on_train_begin(self, args, state, control, **kwargs):
                self.started = clock()
                self.first_step = state.global_step
                if on_log is not None:  # the step count is known from here: the status shows it at once
                    on_log({"phase": "training", "step": state.global_step, "max_steps": state.max_steps})

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
                now = clock()
                if self.eval_began is None:
                    self.eval_began = now
                if on_log is not None and not self.quiet and (now - self.reported >= 1.0 or self.eval_batch == 1
                                                               or self.eval_batch == total):
                    self.reported = now
                    on_log({"phase": "validating", "step": state.global_step, "max_steps": state.max_steps,
                            "eval_batch": self.eval_batch, "eval_batches": total})

            def on_log(self, args, state, control, logs=None, **kwargs):
                logs = logs or {}
                if self.quiet or ("loss" not in logs and "eval_loss" not in logs):
                    return
                record = self.record(state, logs, args)
                self.history.append(record)
                if on_log is not None:
                    on_log(record)

            def on_evaluate(self, args, state, control, **kwargs):
                if self.eval_began is not None:
                    self.eval_s += clock() - self.eval_began
                    self.evals += 1
                    self.eval_began = None

            def record(self, state, logs: dict, args=None) -> dict:
                now = clock()
                elapsed = now - self.started
                done = state.global_step - self.first_step
                eta = None
                if done > 0:
                    validating = now - self.eval_began if self.eval_began is not None else 0.0
                    step_s = (elapsed - self.eval_s - validating) / done
                    # a loss record comes before its step's validation pass, an eval_loss record at its end
                    after = state.global_step - ("eval_loss" not in logs)
                    passes_left = evaluations_left(after, state.max_steps, _eval_every(args) if self.evals else 0)
                    eta = step_s * (state.max_steps - state.global_step) + self.eval_s / max(1, self.evals) * passes_left
                record = {"step": state.global_step, "max_steps": state.max_steps,
                          "epoch": round(state.epoch or 0.0, 4), "elapsed_s": round(elapsed, 2),
                          "eta_s": round(eta, 1) if eta is not None else None, "time": round(time.time(), 2)}
                for key in ("loss", "eval_loss", "learning_rate", "grad_norm"):
                    if logs.get(key) is not None:
                        record[key] = float(logs[key])
                return record

        return ProgressCallback()


def _eval_every(args) -> int:
    """Steps between the Trainer's validation passes (0: none on a step schedule)."""
    if getattr(args, "eval_strategy", None) != "steps":  # IntervalStrategy is a str enum
        return 0
    return int(getattr(args, "eval_steps", 0) or 0)


def evaluations_left(step: int, max_steps: int, eval_every: int) -> int:
    """Validation passes that run after ``step``'s: one at every multiple of ``eval_every`` up to
    ``max_steps``, and one at the last step when that is not a multiple (the Trainer's schedule).

    >>> evaluations_left(1, 100, 10), evaluations_left(10, 100, 10), evaluations_left(20, 25, 10)
    (10, 9, 1)
    """
    if eval_every <= 0 or step >= max_steps:
        return 0
    return max_steps // eval_every - step // eval_every + bool(max_steps % eval_every)
