"""``python -m convo train`` and ``python -m training.finetune``: train a LoRA/QLoRA adapter.

Every default is None here so TrainSettings holds the one set of defaults (the help reads them
from there); ``--job_dir DIR`` alone runs a job from its config.json, as the Fine-tune tab starts it.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from ..data import TASKS, DataError
from ..data.saved import saved_split
from ..finetune import (EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, FinetuneConfig, TrainSettings, _check,
                        process_rank, push_adapter_to_hub, run_training)
from ..finetune import log as training_log
from ..hub import HubError, resolve_token
from ..hub_data import data_file_or_dataset, fetch_named, on_the_hub
from ..jobs import StopRequest, _one_line, _print_record, read_config, read_status, run_job
from ..settings import DTYPE_CHOICES, LoraSettings, ModelSpec


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The fine-tuning flags, shared by ``python -m training.finetune`` and ``python -m convo train``.

    Every default is None so TrainSettings holds the one set of defaults; the help reads them from there.
    """
    d, lora, spec = TrainSettings(), LoraSettings(), ModelSpec()
    add = parser.add_argument
    add("--train_data", help="training data: CoQA, simplified CoQA, SQuAD, chat JSONL, Alpaca, ShareGPT, "
                             "prompt/completion or preference pairs (JSON, JSON Lines, Parquet as the Hub stores "
                             "datasets, an Excel workbook or a spreadsheet's CSV or TSV, any of them gzipped; a "
                             "folder written by datasets' save_to_disk, or one of its .arrow files); "
                             "or a Hub dataset "
                             "(user/name: its train split's file, and its validation split's without --val_data)")
    add("--val_data", help="validation data (default: split --val_fraction off the training data)")
    add("--model_name", default=None, help="base model: 'bundled', a Hub id or a local folder (default: bundled)")
    add("--output_dir", help="where to save the adapter")
    add("--task", choices=TASKS, help="qg, cqg, qa, qa_closed or chat (default: from the data format)")
    add("--num_epochs", type=float, help=f"passes over the data (default {d.epochs:g})")
    add("--max_steps", type=int, help="optimizer steps; overrides --num_epochs")
    add("--batch_size", type=int, help=f"examples per batch (default {d.batch_size}; split into micro-batches, see --micro_batch_size)")
    add("--grad_accum", type=int, help=f"batches per optimizer step (default {d.grad_accum})")
    add("--micro_batch_size", type=int, help="examples per forward pass (default: the whole batch on a GPU, 1 on CPU)")
    add("--learning_rate", type=float, help=f"peak learning rate (default {d.learning_rate:g})")
    add("--max_length", type=int, help=f"longest example in tokens (default {d.max_length})")
    add("--val_fraction", type=float, help=f"held-out share when no --val_data (default {d.val_fraction:g})")
    add("--eval_steps", type=int, help=f"validation loss every N steps (default {d.eval_every})")
    add("--save_steps", type=int, help=f"checkpoint every N steps (default {d.save_every})")
    add("--eval_examples", type=int, help=f"validation examples the validation loss runs on (default {d.eval_examples}; 0: all)")
    add("--early_stopping_patience", type=int, help=f"evaluations without improvement before stopping (0: off; default {d.early_stopping_patience})")
    add("--seed", type=int, help=f"random seed (default {d.seed})")
    add("--lora_r", type=int, help=f"LoRA rank (default {lora.r})")
    add("--lora_alpha", type=int, help=f"LoRA alpha (default {lora.alpha})")
    add("--lora_dropout", type=float, help=f"LoRA dropout (default {lora.dropout:g})")
    add("--target_modules", help=f"'{lora.target_modules}' (default) or comma-separated module names")
    add("--warmup_ratio", type=float, help=f"share of steps warming up (default {d.warmup_ratio:g})")
    add("--weight_decay", type=float, help=f"AdamW weight decay (default {d.weight_decay:g})")
    add("--keep_checkpoints", type=int, help=f"recent checkpoints to keep (default {d.keep_checkpoints})")
    add("--eval_generations", type=int, help=f"held-out examples to generate for after training (default {d.eval_generations}; 0 skips)")
    add("--qlora", action=argparse.BooleanOptionalAction, default=None,
        help="4-bit NF4 base (default: on with CUDA, off on CPU)")
    add("--gradient_checkpointing", action=argparse.BooleanOptionalAction, default=None,
        help="recompute activations to save memory (default: on)")
    add("--no_group_by_length", action="store_true", help="plain random batches instead of length-grouped ones")
    add("--dtype", choices=DTYPE_CHOICES, help=f"compute dtype (default {spec.dtype})")
    add("--device", help=f"auto, cpu, cuda, cuda:1 ... (default {spec.device})")
    add("--trust_remote_code", action="store_true", help="run model code from the Hub")
    add("--push_to_hub", metavar="USER/REPO", help="push the adapter after training (token from $HF_TOKEN)")
    add("--public", action="store_true", help="create the Hub repo as public (default private)")
    add("--overwrite", action="store_true", help="replace an adapter already in --output_dir")
    add("--resume", action="store_true", help="continue from the last checkpoint (of --job_dir, or next to --output_dir)")
    add("--job_dir", help="run as a job: config, progress log, status and checkpoints in this folder")
    return parser


_SETTING_FLAGS = {"num_epochs": "epochs", "max_steps": "max_steps", "batch_size": "batch_size",
                  "grad_accum": "grad_accum", "learning_rate": "learning_rate", "max_length": "max_length",
                  "val_fraction": "val_fraction", "eval_steps": "eval_every", "save_steps": "save_every",
                  "eval_examples": "eval_examples", "micro_batch_size": "micro_batch_size",
                  "early_stopping_patience": "early_stopping_patience", "seed": "seed", "qlora": "qlora",
                  "task": "task", "warmup_ratio": "warmup_ratio", "weight_decay": "weight_decay",
                  "keep_checkpoints": "keep_checkpoints", "eval_generations": "eval_generations",
                  "gradient_checkpointing": "gradient_checkpointing"}
_LORA_FLAGS = {"lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "target_modules": "target_modules"}


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """Parsed flags -> FinetuneConfig; raises ValueError naming the bad flag."""
    _check(bool(args.train_data), "--train_data is required (or --job_dir DIR --resume)")
    _check(bool(args.output_dir), "--output_dir is required")
    lora = LoraSettings(**{name: getattr(args, flag) for flag, name in _LORA_FLAGS.items()
                           if getattr(args, flag) is not None})
    values = {name: getattr(args, flag) for flag, name in _SETTING_FLAGS.items() if getattr(args, flag) is not None}
    if args.no_group_by_length:
        values["group_by_length"] = False
    settings = TrainSettings(lora=lora, **values)
    optional = {name: getattr(args, name) for name in ("model_name", "dtype", "device") if getattr(args, name)}
    return FinetuneConfig(train_data=args.train_data, output_dir=args.output_dir, val_data=args.val_data,
                          settings=settings, push_to_hub=args.push_to_hub, private=not args.public,
                          overwrite=args.overwrite, trust_remote_code=args.trust_remote_code, **optional)


def with_hub_data(config: FinetuneConfig) -> FinetuneConfig:
    """The config with data named by a Hub dataset (``stanfordnlp/coqa``, a path in one, or a file's
    address) and not a file here downloaded; a dataset id for the training data and no
    ``--val_data`` also fetch the dataset's validation split (as the tab does, from one listing), as a
    ``DatasetDict`` saved by ``datasets`` gives its own (the training data reads its train split)."""
    train, val = config.train_data, config.val_data
    fetched_train = fetched_val = False
    if on_the_hub(train):
        fetched = fetch_named(train, validation=not val)
        if fetched.note:
            print(f"warning: validation: {fetched.note} Part of the training data is held out.", file=sys.stderr)
        train, val = str(fetched.train), val or (fetched.validation and str(fetched.validation))
        fetched_train, fetched_val = True, bool(val) and not config.val_data
    elif not val and Path(train).is_dir() and saved_split(Path(train), "train") is not None \
            and (saved := saved_split(Path(train), "validation")) is not None:  # (train reads the train split)
        print(f"validation: {saved} (the saved DatasetDict's validation split)", file=sys.stderr)
        val = str(saved)
    if val and on_the_hub(val):
        val, fetched_val = data_file_or_dataset(val, split="validation"), True
    if fetched_train or fetched_val:
        print("fetched from the Hub: " + ", ".join(
            path for path, fetched in ((train, fetched_train), (val, fetched_val)) if fetched), file=sys.stderr)
    return replace(config, train_data=train, val_data=val)


def _show_warnings() -> None:
    """Print this module's warnings (skipped records...) to stderr as ``warning: ...`` lines."""
    if not any(isinstance(h, _StderrWarnings) for h in training_log.handlers):
        training_log.addHandler(_StderrWarnings(logging.WARNING))


class _StderrWarnings(logging.Handler):
    """Writes to whatever sys.stderr is at the time (not the stream of when it was made)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"warning: {record.getMessage()}", file=sys.stderr)


def cli_main(args: argparse.Namespace) -> int:
    """Run the parsed command: train (as a job with --job_dir), then push when asked."""
    _show_warnings()
    try:
        if args.job_dir and not args.train_data:  # a job folder: its config.json is the config
            config, given = read_config(args.job_dir), None
        else:
            config = given = with_hub_data(config_from_args(args))
    except (ValueError, TypeError, HubError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.job_dir:
        code = run_job(args.job_dir, config=given, resume=args.resume)
        if process_rank() != 0:  # rank 0 reports and pushes for a data-parallel run
            return code
        status = read_status(args.job_dir)
        if code != EXIT_OK:
            print(f"job {status.get('state')}: {status.get('error') or ''}".strip(), file=sys.stderr)
            return code
        output = status.get("adapter")
        summary = {"adapter": output, "metrics": status.get("metrics", {})}
    else:
        stop = StopRequest().install()
        try:
            result = run_training(config, resume=args.resume, on_log=_print_record, should_stop=stop)
        except (DataError, ValueError) as exc:
            print(f"error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if process_rank() != 0:
            return EXIT_CANCELLED if result.status == "cancelled" else EXIT_OK
        if result.status == "cancelled":
            print(f"cancelled at step {result.steps}: resume from {result.checkpoint} with --resume", file=sys.stderr)
            return EXIT_CANCELLED
        output, summary = result.output_dir, {"adapter": result.output_dir, "metrics": result.metrics}
    if config.push_to_hub:
        summary["pushed"] = _push_from_cli(output, config)
        if summary["pushed"] is None:
            print(json.dumps(summary, indent=2))
            return EXIT_FAILED
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def _push_from_cli(adapter_dir: str, config: FinetuneConfig) -> str | None:
    try:
        return push_adapter_to_hub(adapter_dir, config.push_to_hub, token=resolve_token(), private=config.private)
    except HubError as exc:
        print(f"push failed: {exc} (the adapter is saved in {adapter_dir})", file=sys.stderr)
        return None


def build_parser(prog: str = "python -m training.finetune") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Train a LoRA/QLoRA adapter on question-answer data.")
    return add_train_arguments(parser)


def register_cli(subparsers) -> None:
    """``python -m convo train ...``: the same flags as ``python -m training.finetune``."""
    parser = subparsers.add_parser("train", help="fine-tune a LoRA/QLoRA adapter on your data",
                                   description="Train a LoRA/QLoRA adapter on question-answer data.")
    add_train_arguments(parser)
    parser.set_defaults(func=cli_main)
