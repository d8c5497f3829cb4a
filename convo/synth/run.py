"""Runs: generate a job into its output file with progress, preview a few, and push the result to the Hub."""
from __future__ import annotations

import itertools
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.generation import Stop, pipeline
from .config import ConfigError
from .jobs import Item, Job, SynthSampling, default_sampling
from .programs import Result, generate_items, program_for
from .output import _writing, append_record, done_keys, make_record, output_counts, repair_tail


@dataclass
class Progress:
    """Where a run stands; ``run`` yields one as each conversation ends."""

    total: int | None
    """Items this run has to make (``None`` when running forever)."""
    skipped: int = 0
    """Items already in the output file (finished by an earlier run)."""
    kept: int = 0
    dropped: int = 0
    """Generated conversations the filters rejected (an item may be retried)."""
    gave_up: int = 0
    """Items with no kept conversation after ``max_attempts``."""
    elapsed: float = 0.0
    latest: list[Result] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    finished: bool = False
    cancelled: bool = False

    @property
    def done(self) -> int:
        return self.kept + self.gave_up

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far; None before the first item is done or when running forever."""
        if self.total is None or self.done == 0:
            return None
        return max(0.0, self.elapsed / self.done * (self.total - self.done))

    @property
    def per_minute(self) -> float:
        return 60.0 * self.kept / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        """``kept 5 · dropped 2 · 5/8 · ETA 0:42``"""
        parts = [f"kept {self.kept}", f"dropped {self.dropped}"]
        if self.gave_up:
            parts.append(f"gave up {self.gave_up}")
        if self.total is not None:
            parts.append(f"{self.done}/{self.total}")
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        if self.finished:
            parts.append(f"took {format_seconds(self.elapsed)}")
        elif self.eta is not None:
            parts.append(f"ETA {format_seconds(self.eta)}")
        return " · ".join(parts)


def format_seconds(seconds: float) -> str:
    """``75`` -> ``'1:15'``; ``3700`` -> ``'1:01:40'``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def model_label(lm) -> str:
    spec = getattr(lm, "spec", None)
    return spec.label if spec is not None else "unknown"


def card_model(lm) -> str:
    """The model as a dataset names it (each record's meta and the card's config), as
    ``engine.loading.portable_name`` does: datasets are pushed, and neither "bundled" nor a path on this
    server means anything on another machine. A remote engine is named by the model its server serves
    (``remote:<name>`` is this app's label for the server, ``hf:`` adds the billing route).

    >>> from types import SimpleNamespace
    >>> from convo.settings import ModelSpec
    >>> card_model(SimpleNamespace(spec=ModelSpec("bundled", adapter="/srv/convo/adapters/qg-1")))
    'HuggingFaceTB/SmolLM2-135M-Instruct + qg-1 (a local folder)'
    >>> card_model(SimpleNamespace(spec=ModelSpec("Qwen/Qwen2.5-0.5B-Instruct", adapter="alice/curious-qg")))
    'Qwen/Qwen2.5-0.5B-Instruct + alice/curious-qg'
    >>> card_model(SimpleNamespace(spec=ModelSpec("remote:gpu"), endpoint=SimpleNamespace(model="/models/Qwen2.5-7B")))
    'Qwen2.5-7B (a path on the server)'
    """
    from ..engine.loading import portable_name

    spec = getattr(lm, "spec", None)
    if spec is None:
        return "unknown"
    endpoint = getattr(lm, "endpoint", None)
    if endpoint is None:
        named, base = portable_name, spec.name
    else:
        def named(name: str) -> str:  # the server's names (its disk is not this one): a path by its last part
            name = name.strip()
            if not name.startswith(("/", "~", "./", "../")):
                return name  # a Hub id, or a name the server gives it ("llama3.1:8b", "tgi")
            return f"{Path(name).name or name} (a path on the server)"

        base = endpoint.model
    return (named(base) or spec.name) + (f" + {named(spec.adapter)}" if spec.adapter else "")


def run(lm, job: Job, out_path: str | Path, *, sampling=None, batch_size: int | None = None, stop: Stop | None = None,
        forever: bool = False) -> Iterator[Progress]:
    """Generate the job's conversations into ``out_path`` (chat JSONL), yielding progress as each one ends.

    ``batch_size`` conversations (default ``SynthSampling().batch_size``) are made at once, and a new
    one starts as soon as one ends. Each kept conversation is appended and fsynced at once; items
    already in the file are skipped, so an interrupted run resumes where it stopped. Failed items are
    retried (up to ``job.max_attempts``) as soon as they fail. ``forever`` keeps making new samples
    until ``stop`` is set.
    """
    batch_size = SynthSampling().batch_size if batch_size is None else batch_size
    if not 1 <= batch_size <= 512:
        raise ConfigError(f"batch size: expected 1 to 512, got {batch_size}")
    sampling = sampling or default_sampling(job)
    stop = stop or Stop()
    model = card_model(lm)  # every record's meta names it (once: it looks on disk)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(out_path)
    done = done_keys(out_path)
    attempts = job.max_attempts if sampling.do_sample else 1
    if forever:
        todo: Iterator[Item] = (i for i in job.items(forever=True) if i.key not in done)
        progress = Progress(total=None, skipped=len(done))
    else:
        all_items = list(job.items())
        pending = [i for i in all_items if i.key not in done]
        progress = Progress(total=len(pending), skipped=len(all_items) - len(pending))
        todo = iter(pending)
    retry: deque[tuple[Item, int]] = deque()
    make = program_for(lm, job, sampling)

    def source():
        """Retries first (so items finish early), then new items."""
        item, attempt = retry.popleft() if retry else (next(todo, None), 0)
        return None if item is None else ((item, attempt), make(item))

    started = time.monotonic()
    yield progress
    with open(out_path, "a", encoding="utf-8") as fh:
        for finished in pipeline(lm, source, sampling, batch_size, stop):
            (_, attempt), result = finished.key, finished.value
            result.attempt = attempt
            if result.kept:
                with _writing:  # an interrupt waits: the count always matches the lines written
                    append_record(fh, make_record(result, job, model, sampling))
                    progress.kept += 1
            else:
                progress.dropped += 1
                progress.reasons.update(result.faults)
                if attempt + 1 < attempts:
                    retry.append((result.item, attempt + 1))
                else:
                    progress.gave_up += 1
            progress.latest = [result]
            progress.elapsed = time.monotonic() - started
            yield progress
            progress.latest = []
    progress.finished = not stop.is_set()
    progress.cancelled = not progress.finished
    progress.elapsed = time.monotonic() - started
    yield progress


def preview(lm, job: Job, n: int = 3, sampling=None, batch_size: int | None = None) -> list[Result]:
    """One attempt at the first ``n`` items, kept or not (nothing is written): check the prompts first."""
    items = list(itertools.islice(job.items(), n))
    return generate_items(lm, job, items, sampling or default_sampling(job), batch_size)


def transcript(messages: Sequence[dict], roles: Sequence[str] = ("User", "Assistant")) -> str:
    """Messages as ``User: ...`` lines, for previews and tables."""
    names = {"user": roles[0], "assistant": roles[1], "system": "System"}
    return "\n".join(f"{names.get(m['role'], m['role'])}: {m['content']}" for m in messages)


# --------------------------------------------------------------------------- Hub


def dataset_config(job: Job, model: str, sampling) -> dict:
    """What the dataset card records about how the conversations were made."""
    return {**job.to_config(), "model": model, "sampling": sampling.to_dict(), "generator": "convo synth"}


def push_to_hub(out_path: str | Path, repo_id: str, *, token: str | None, config: Mapping[str, Any],
                private: bool = False) -> str:
    """Push a chat JSONL output as a Hub dataset, with a card recording ``config``; returns the URL."""
    from .. import hub
    from ..cards import dataset_card

    counts = output_counts(out_path)
    if not counts["conversations"]:
        raise hub.HubError("No conversations to push yet: run the generation first.")
    card = dataset_card(repo_id=hub.validate_repo_id(repo_id), config=dict(config), counts=counts)
    return hub.push_dataset([Path(out_path)], repo_id, token=token, private=private, card=card)


if __name__ == "__main__":  # python -m convo.synth: the same as python -m convo synth
    from convo.cli.synth import main

    sys.exit(main())
