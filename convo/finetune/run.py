"""Training from files: ``run_training(FinetuneConfig(...))`` reads and checks the data files, then
trains and saves the adapter (see train_adapter).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..data import load_examples, split_train_val
from .config import Conversation, FinetuneConfig, LogFn, StopFn, TrainResult, log
from .train import train_adapter


@dataclass
class TrainingData:
    """Examples read from the data files, ready for train_adapter."""

    train: list[Conversation]
    valid: list[Conversation]
    task: str
    info: dict
    """File names, sha256 digests and counts (for convo_adapter.json and the card)."""


def load_training_data(config: FinetuneConfig) -> TrainingData:
    """Validate and read the data files (each parsed once); raises DataError naming the first fault
    of a bad file. They are files on this machine, or uploads the app has checked: read without the
    upload caps, so a full CoQA or SQuAD training file trains."""
    train, report = load_examples(config.train_data, config.settings.task or None, max_bytes=None)
    task = report.task
    _warn_skipped(report)
    info = {"train_file": Path(config.train_data).name, "train_sha256": report.sha256}
    if config.val_data:
        valid, val_report = load_examples(config.val_data, task, max_bytes=None)
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
    if on_log is not None:
        on_log({"phase": "reading", "file": Path(config.train_data).name})
    data = load_training_data(config)
    settings = replace(config.settings, task=data.task)
    return train_adapter(config.spec(), data.train, data.valid, settings, config.output_dir, on_log=on_log,
                         should_stop=should_stop, checkpoint_dir=checkpoint_dir, resume=resume,
                         data_info=data.info, overwrite=config.overwrite)
