"""How a training job looks in the Fine-tune tab: its status line, progress bar, loss chart, metrics
table and held-out samples, each a pure function of what convo.jobs reads from the job's folder."""
from __future__ import annotations

import html
import os
import re
from pathlib import Path

import gradio as gr
import pandas as pd

from .. import finetune as core
from .. import jobs
from ..store import data_dir
from .common import adapter_label, adapters_dir


def progress_html(view: jobs.JobView | None) -> str:
    if view is not None and view.state == "running" and view.phase == "encoding" and view.preparing.get("total"):
        done, total = view.preparing.get("done", 0), view.preparing["total"]
        return (f'<div class="ft-progress" data-phase="encoding"><progress value="{done}" max="{total}" '
                f'style="width:100%"></progress><span>{html.escape(jobs.preparing_text("encoding", view.preparing))}'
                "</span></div>")
    if view is None or not view.max_steps:
        return ""
    losses = f" · {latest}" if (latest := latest_losses(view.progress)) else ""
    if view.state == "running" and view.phase == "validating" and view.eval_batches:
        when = f"after step {view.step:,} / {view.max_steps:,}" if view.step else "the base model, before the first step"
        return (f'<div class="ft-progress" data-phase="validating"><progress value="{view.eval_batch}" '
                f'max="{view.eval_batches}" style="width:100%"></progress><span>validating: batch {view.eval_batch} / '
                f"{view.eval_batches} ({when}){losses}</span></div>")
    eta = f" · ETA {jobs.format_seconds(view.eta_s)}" if view.state == "running" and view.eta_s is not None else ""
    return (f'<div class="ft-progress"><progress value="{view.step}" max="{view.max_steps}" style="width:100%">'
            f"</progress><span>step {view.step:,} / {view.max_steps:,} ({view.fraction:.0%}){eta}{losses}</span></div>")


def loss_frame(progress: list[dict]) -> pd.DataFrame:
    """Train and validation losses by step, for the LinePlot, and an empty row (not drawn) per split:
    the page builds the plot's colour scale from the first frame it draws and then only swaps the data,
    so a split missing from it had no colour (the tab starts with no job: an empty grid).

    >>> loss_frame([{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.1, "eval_loss": 2.3}]).values.tolist()
    [[1, 2.5, 'train'], [2, 2.1, 'train'], [2, 2.3, 'validation'], [<NA>, nan, 'train'], [<NA>, nan, 'validation']]
    """
    rows = [{"step": r["step"], "loss": r["loss"], "split": "train"} for r in progress if r.get("loss") is not None]
    rows += [{"step": r["step"], "loss": r["eval_loss"], "split": "validation"}
             for r in progress if r.get("eval_loss") is not None]
    rows += [{"step": None, "loss": None, "split": split} for split in ("train", "validation")]
    # Typed columns: the plot takes its axis types from the first frame it gets (object columns made
    # both axes discrete: a label per loss value, no line)
    frame = pd.DataFrame(rows, columns=["step", "loss", "split"])
    return frame.astype({"step": "Int64", "loss": "float64", "split": "str"})


NO_LOSS = "ft-no-loss"
"""The loss plot's class while it has no loss to draw: the app's CSS folds it to no height. It showed
empty axes before a job's first loss (the page still logs Vega's "Infinite extent" warnings for them).
(Not ``visible=False``, which would unbuild the chart and build it again on the first loss, where an
update that came meanwhile was lost; and the plot took no notice of ``visible="hidden"``.) It keeps
its width, so the chart is built at the tab's."""


def loss_plot(progress: list[dict]):
    """The loss plot's update: its frame, folded away while no loss is in it."""
    frame = loss_frame(progress)
    return gr.update(value=frame, elem_classes=[] if frame["loss"].notna().any() else [NO_LOSS])


def latest_losses(progress: list[dict]) -> str:
    """The latest training and validation losses, for the progress line: a line needs two points, so
    a run's first minutes (one validation point, then one training point) and a run cancelled after
    its first step draw an empty chart. (They were the chart's title; a new title makes the page
    build the chart again, and a loss update that came while it did was lost: the chart stayed
    steps behind, as at "Finished".)

    >>> latest_losses([{"step": 0, "eval_loss": 1.42491}, {"step": 1, "loss": 1.96873}])
    'latest loss: train 1.9687 at step 1, validation 1.4249 at step 0'
    """
    latest = [f"{split} {rows[-1][key]:.4f} at step {rows[-1]['step']}" for split, key in (("train", "loss"),
                                                                                          ("validation", "eval_loss"))
              if (rows := [r for r in progress if r.get(key) is not None])]
    return f"latest loss: {', '.join(latest)}" if latest else ""


def status_text(view: jobs.JobView | None, owner: str | None = None) -> str:
    if view is None:
        return "No training job yet."
    job_id = f"  \nJob id: `{Path(view.job_dir).name}` (open it from another browser with this id)"
    step = f"step {view.step:,}/{view.max_steps:,}" if view.max_steps else "starting"
    when = f"at step {view.step:,}/{view.max_steps:,}" if view.max_steps and view.step else "before the first step"
    resume_from = (f" The last checkpoint is kept: Resume continues from step {core.checkpoint_step(view.checkpoint)}."
                   if view.checkpoint else " No checkpoint was saved yet: Resume starts again.")
    return {
        "queued": f"**Queued**: position {view.queue_position}, {jobs.waiting_for(view.job_dir, owner)} — one "
                  "training job runs per GPU (one at a time on CPU).",
        "running": (f"**Validating** {f'after step {view.step:,}/{view.max_steps:,}' if view.step else 'the base model'}"
                    f": batch {view.eval_batch}"
                    f"{f'/{view.eval_batches}' if view.eval_batches else ''}." if view.phase == "validating"
                    else f"**Preparing**: {html.escape(jobs.preparing_text(view.phase, view.preparing))}."
                    if view.phase in jobs.PREPARING else f"**Training**: {step}."),
        "finished": f"**Finished**: adapter saved as `{adapter_label(view.adapter)}`; pick it in the Adapter menu "
                    "above to use it in Chat and Questions.",
        "failed": f"**Failed**: {html.escape(shown_error(view.error or 'unknown error'))}",
        "cancelled": f"**Cancelled** {when}.{resume_from}",
        "died": f"**Stopped unexpectedly** {when} (killed or crashed).{resume_from}",
    }.get(view.state, f"**{view.state}**") + job_id


def shown_error(error: str) -> str:
    """A job's failure as visitors see it: an adapter by its name, its server path kept on the server
    (a folder another process made between Start and the run's own check failed the job with it).

    Any other path in the app's data folder is named from there.

    >>> from convo.ui.common import adapters_dir
    >>> shown_error(f"{adapters_dir() / 'qg-1'} already holds an adapter: choose another output folder")
    "the adapter folder 'qg-1' already holds an adapter: choose another output folder"
    >>> shown_error(f"[Errno 28] No space left on device: '{adapters_dir() / 'qg-1.checkpoints' / 'step-5'}'")
    "[Errno 28] No space left on device: 'the adapter folder 'qg-1.checkpoints'/step-5'"
    >>> shown_error(f"cannot write {adapters_dir()}: disk full")
    'cannot write (the data folder)/adapters: disk full'
    """
    folder = re.escape(str(adapters_dir()) + os.sep)
    error = re.sub(folder + r"([A-Za-z0-9._-]+)", r"the adapter folder '\1'", error)
    return error.replace(str(data_dir()), "(the data folder)")


def metrics_markdown(metrics: dict) -> str:
    if not metrics:
        return ""
    lines = ["| | base model | adapter |", "|---|---|---|"]
    for label, key in (("ROUGE-L", "rouge_l"), ("BLEU", "bleu")):
        if key in metrics:
            lines.append(f"| {label} (held-out) | {metrics.get('base_' + key, '–')} | {metrics[key]} |")
    if "eval_loss" in metrics:
        lines.append(f"| validation loss | {metrics.get('base_eval_loss', '–')} | {metrics['eval_loss']} |")
    extra = ", ".join(f"{k} {metrics[k]}" for k in ("train_loss", "steps", "epochs", "train_tokens", "train_runtime_s")
                      if k in metrics)
    return "\n".join(lines) + (f"\n\n{extra}" if extra else "")


SAMPLE_CHARS = 400
"""Characters of a held-out example's prompt shown: a passage's start, a conversation's end (its last turns)."""


def samples_frame(samples: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([[clip_prompt(s["prompt"]), s["reference"], s["base"], s["adapter"]] for s in samples],
                        columns=["prompt", "reference", "base model", "adapter"])


def clip_prompt(text: str) -> str:
    """A prompt cut for the table: a conversation (``User:`` lines) keeps its end, a passage its start.

    >>> cut = clip_prompt("User: " + "a" * 500 + "\\nAssistant: Hi\\nUser: Why?")
    >>> len(cut), cut[:5], cut.endswith("Assistant: Hi\\nUser: Why?")
    (400, '...aa', True)
    """
    if len(text) <= SAMPLE_CHARS:
        return text
    return "..." + text[-SAMPLE_CHARS + 3:] if text.startswith("User: ") else text[:SAMPLE_CHARS - 3] + "..."
