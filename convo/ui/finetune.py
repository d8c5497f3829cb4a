"""The Fine-tune tab: upload data, read its report, train a LoRA/QLoRA adapter as a background job,
watch the loss, compare with the base model, and push the adapter to the Hub.

Training runs in a subprocess (``python -m training.finetune ... --job_dir DIR``, shown in the tab);
this module only starts, polls and cancels it through convo.jobs. The browser remembers its job
(gr.BrowserState), so a reload reattaches to a running job.
"""
from __future__ import annotations

import html
import re
import shlex
import threading
import time
import uuid
from pathlib import Path

import gradio as gr
import pandas as pd

from .. import finetune as core
from .. import jobs
from ..data import MAX_BYTES, MB, DataError, split_train_val
from ..hub import HubError, resolve_token
from ..data.base import DATA_SUFFIXES
from ..engine import ModelLoadError
from ..settings import LoraSettings
from . import operator
from .common import OUTPUT_BOX, Shared, adapter_choices, adapters_dir, default_model, is_operator, spec_from
from .job_view import NO_LOSS, loss_frame, loss_plot, metrics_markdown, progress_html, samples_frame, status_text
from .operator import LIVE_STATES
from .finetune_data import UPLOAD_HINT, example_count, fetch_hub_data, inspect_upload, upload_path

TASK_LABELS = {
    "qg": "Question generation (passage -> question)",
    "cqg": "Conversational question generation (passage + earlier turns -> next question)",
    "qa": "Question answering with the passage",
    "qa_closed": "Question answering without the passage",
    "chat": "Chat (every assistant turn is a target)",
}
QLORA_CHOICES = [("auto (4-bit on a GPU)", "auto"), ("on: 4-bit NF4 base", "on"), ("off: full-precision base", "off")]
MAX_COMPARE = 8
VIEW_FIELDS = ("status", "progress", "plot", "command", "metrics", "samples", "adapter", "timer")
POLL_S = 1.0


# ----------------------------------------------------------------------------- start, cancel, resume


def _settings(task, epochs, max_steps, batch_size, grad_accum, learning_rate, max_length, val_fraction,
              eval_every, save_every, patience, seed, qlora, lora_r, lora_alpha, lora_dropout) -> core.TrainSettings:
    return core.TrainSettings(
        task=task or None, epochs=float(epochs), max_steps=int(max_steps) if max_steps else None,
        batch_size=int(batch_size), grad_accum=int(grad_accum), learning_rate=float(learning_rate),
        max_length=int(max_length), val_fraction=float(val_fraction), eval_every=int(eval_every),
        save_every=int(save_every), early_stopping_patience=int(patience), seed=int(seed),
        qlora={"on": True, "off": False}.get(qlora),
        lora=LoraSettings(r=int(lora_r), alpha=int(lora_alpha), dropout=float(lora_dropout)))


# The code names in TrainSettings' messages, as the fields are labelled in this tab (longest first,
# so "early_stopping_patience" is replaced before any shorter name inside it).
FIELD_LABELS = {
    "early_stopping_patience": "Early stopping patience", "save_every": "Checkpoint every N steps",
    "eval_every": "Validate every N steps", "max_steps": "Max steps", "batch_size": "Batch size",
    "grad_accum": "Gradient accumulation", "learning_rate": "Learning rate", "max_length": "Max tokens per example",
    "val_fraction": "Validation share", "epochs": "Epochs", "LoRA r": "LoRA rank r", "LoRA alpha": "LoRA alpha",
    "LoRA dropout": "LoRA dropout",
}


def in_labels(message: str) -> str:
    """A settings error as the user reads the form: field labels in quotes instead of code names."""
    message = re.sub(r"\s*\(early_stopping_patience > 0\)", "", message)
    for name in sorted(FIELD_LABELS, key=len, reverse=True):
        message = re.sub(rf"(?<![\w\"]){re.escape(name)}(?![\w\"])", f'"{FIELD_LABELS[name]}"', message)
    return message


SETTING_NAMES = ("task", "epochs", "max_steps", "batch_size", "grad_accum", "learning_rate", "max_length",
                 "val_fraction", "eval_every", "save_every", "early_stopping_patience", "seed", "qlora", "LoRA r",
                 "LoRA alpha", "LoRA dropout")
"""The names of ``_settings``' arguments in TrainSettings' messages, in the order of its arguments."""
CHECKED_FIELDS = tuple(name for name in SETTING_NAMES if name in FIELD_LABELS)
"""The number fields that show a message beside them."""


def field_messages(*settings_values) -> dict[str, str]:
    """What is wrong with the training settings, by field: {name: message in the form's labels}."""
    empty = [name for name, value in zip(SETTING_NAMES, settings_values) if value is None and name in FIELD_LABELS]
    if empty:
        return {name: "Fill in this field." for name in empty}
    try:
        _settings(*settings_values)
    except (TypeError, ValueError) as exc:
        raw = str(exc)
        return {name: in_labels(raw) for name in CHECKED_FIELDS
                if re.search(rf"(?<![\w\"]){re.escape(name)}(?![\w\"])", raw)}
    return {}


def check_fields(*settings_values):
    """A message beside each field a setting's error names (shown in red), none beside the others."""
    messages = field_messages(*settings_values)
    return tuple(gr.update(info=messages.get(name, ""), elem_classes=["ft-invalid"] if name in messages else [])
                 for name in CHECKED_FIELDS)


def follow_validation(eval_every, save_every, patience):
    """With early stopping on, checkpoints must fall on validation steps: keep "Checkpoint every N
    steps" a multiple of "Validate every N steps" (the nearest one), so the defaults never clash."""
    try:
        eval_every, save_every, patience = int(eval_every), int(save_every), int(patience)
    except (TypeError, ValueError):
        return gr.skip()
    if patience <= 0 or eval_every < 1 or save_every % eval_every == 0:
        return gr.skip()
    return eval_every * max(1, round(save_every / eval_every))


def plan_text(file, val_file, *settings_values) -> str:
    """The run's time split between training and the validation loss, shown before it starts."""
    path = upload_path(file)
    if not path:
        return ""
    try:
        settings = _settings(*settings_values)
        n_train, task = example_count(path, settings.task or None)
        if upload_path(val_file):
            n_valid = example_count(upload_path(val_file), task)[0]
        else:
            train, valid = split_train_val(range(n_train), settings.val_fraction, settings.seed)
            n_train, n_valid = len(train), len(valid)
    except (TypeError, ValueError, KeyError, DataError, OSError):  # the report above says what is wrong
        return ""
    plan = core.plan_time_split(settings, n_train, n_valid)
    per_step = settings.batch_size * settings.grad_accum
    steps = _plural(plan["steps"], "step")
    if per_step >= n_train:  # "1 steps of 8 examples on 2 training examples" read as nonsense
        text = f"**Planned**: {steps} of all {_plural(n_train, 'training example')} (batch size {per_step})"
    else:
        text = f"**Planned**: {steps} of {_plural(per_step, 'example')} on {n_train:,} training examples"
    if plan["evaluations"]:
        text += (f"; validation loss {plan['evaluations']:,} times (the first on the base model) on "
                 f"{plan['eval_examples']:,} of {_plural(n_valid, 'held-out example')}")
    text += f". Time: about {plan['train_share']:.0%} training, {plan['eval_share']:.0%} validation"
    if n_valid and settings.eval_generations:
        text += f", then generating for {_plural(min(settings.eval_generations, n_valid), 'held-out example')}"
    return text + "."


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def adapter_folder(name: str) -> Path:
    """Where an adapter called ``name`` is saved (so Chat and Questions list it)."""
    return adapters_dir() / core.slug((name or "").strip())


NAME_CHARS = "letters A-Z and a-z, digits, '-', '_' and '.'"
NAME_INFO = f"{NAME_CHARS}; left empty: named after the task and the model"


def name_info(name: str | None):
    """What the adapter will be called, under the name box, where a name with other characters is saved
    as its slug (emoji and non-Latin letters were dropped without a word before the run)."""
    typed = (name or "").strip()
    saved = core.slug(typed)
    if not typed or saved == typed:
        return gr.update(info=NAME_INFO)
    return gr.update(info=f"Saved as \"{saved}\" (an adapter's name keeps {NAME_CHARS})")


def own_job(job_dir) -> Path | None:
    """The browser's job folder, only if it really is a job folder of this app."""
    if not job_dir:
        return None
    path = Path(job_dir).resolve()
    return path if path.parent == jobs.jobs_dir().resolve() and (path / "config.json").is_file() else None


def owner_of(browser_id: str | None, profile=None) -> str | None:
    """Who owns the jobs started here: the signed-in Hub user, else this browser (its id in localStorage)."""
    name = getattr(profile, "username", None)
    return f"hf:{name}" if name else (f"browser:{browser_id}" if browser_id else None)


def start_for_owner(profile: gr.OAuthProfile | None, request: gr.Request, browser_id, *inputs):
    """``start_training`` as the Start button's handler: the job belongs to this user or browser
    (a browser gets its id with its first job)."""
    given = browser_id
    browser_id = browser_id or uuid.uuid4().hex
    job, *shown = start_training(*inputs, owner=owner_of(browser_id, profile),
                                 session=getattr(request, "session_hash", None))
    # a refused Start keeps the job: writing it again fired the job's change event, whose poll replaced
    # the "Not started" reason with "No training job yet." (a flaky browser test in CI); and it keeps the
    # browser's id (a double-click's second click, refused, gave the browser another id than its job's)
    if job == inputs[3]:
        return (given or gr.skip()), gr.skip(), *shown
    return browser_id, job, *shown


def attach(job_dir, browser_id, unlocked=False, profile: gr.OAuthProfile | None = None):
    """On page load and when the tab is opened: the job to show. The one this browser last looked at
    if it is still theirs (or this is the operator), else their newest live job, else their newest
    job. (The stored values may arrive after the page's load event, hence the tab's select event too.)"""
    owner = owner_of(browser_id, profile)
    job = own_job(job_dir)
    if owner is None and job is None:
        # Nothing known yet (the browser's stored values may still be on their way): change nothing,
        # so a late answer to this call never blanks a job another call has already shown.
        return (gr.skip(),) * (1 + len(poll(None)))
    if job is not None and jobs.job_owners(job) and owner not in jobs.job_owners(job) \
            and not is_operator(unlocked, profile):
        job = None
    if job is None or jobs.job_state(job) not in LIVE_STATES:
        mine = jobs.owned_jobs(owner)
        live = [j for j in mine if jobs.job_state(j) in LIVE_STATES]
        job = (live or ([job] if job else []) or mine or [None])[0]
    job_dir = str(job) if job else None
    return job_dir, *poll(job_dir, owner)


def reclaim(job_id, browser_id, profile: gr.OAuthProfile | None = None):
    """Show and control a job by its id (e.g. from another browser): it becomes this user's too."""
    job = jobs.find_job(job_id)
    if job is None:
        raise gr.Error(f"No training job with the id '{(job_id or '').strip()}' (it is the name shown as 'Job id').")
    browser_id = browser_id or uuid.uuid4().hex
    owner = owner_of(browser_id, profile)
    jobs.add_owner(job, owner)
    return browser_id, str(job), *poll(str(job), owner)


def start_training(file, val_file, name, job_dir, model, *settings_values, owner: str | None = None,
                   session: str | None = None):
    """Start a training job for the uploaded data; returns the job folder and the first view."""
    job = own_job(job_dir)
    if job is not None and jobs.job_state(job) in LIVE_STATES:
        gr.Warning("This browser already has a training job running: cancel it or wait for it to finish.")
        return job_dir, *poll(job_dir)
    path = upload_path(file)
    try:
        if not path:
            raise ValueError("Upload a training data file first.")
        settings = _settings(*settings_values)
        name = (name or "").strip() or f"{settings.task or 'adapter'}-{core.slug(Path(model or default_model()).name)}"
        output = adapter_folder(name)
        config = core.FinetuneConfig(train_data=path, val_data=upload_path(val_file), output_dir=str(output),
                                     model_name=spec_from(model, None).name, settings=settings)
        with _starting:  # one Start at a time: two at once (a double-click) both found the name free
            now = time.monotonic()
            key = (session, path, str(output.resolve()))  # (only this page's clicks: another's upload may be the same file)
            for old in [k for k, (_, at) in _started.items() if now - at > SAME_START_S]:
                del _started[old]
            if key in _started:  # a double-click's second click: the job its first click started
                job = _started[key][0]
                if owner:  # (a browser's first job: each click made the browser an id, and the last one is kept)
                    jobs.add_owner(job, owner)
                return str(job), *poll(str(job))
            if (output / "adapter_config.json").exists():
                raise ValueError(f"An adapter named '{output.name}' already exists: choose another name.")
            if _making(output) is not None:
                raise ValueError(f"A training job is already making the adapter '{output.name}': wait for it to "
                                 "finish, or choose another name.")
            job = jobs.create_job(config)
            if owner:
                jobs.add_owner(job, owner)
            jobs.spawn_job(job)
            _started[key] = (job, now)
    except TypeError:  # a cleared number box arrives as None
        return _refused("Fill in every training setting (a number box is empty).", job_dir)
    except ValueError as exc:
        return _refused(in_labels(str(exc)), job_dir)
    return str(job), *poll(str(job))


_starting = threading.Lock()
_started: dict[tuple[str | None, str, str], tuple[Path, float]] = {}  # (page, upload, adapter) -> the job, when
SAME_START_S = 2.0
"""Start pressed again on the same page within this many seconds, for the same upload and adapter, is the
same click twice (a double-click): it shows the job the first click started."""


def _making(output: Path) -> Path | None:
    """The queued or running job whose adapter goes to ``output``, if any."""
    target = str(output.resolve())
    for job in jobs.all_jobs():
        if jobs.job_state(job) in LIVE_STATES:
            try:
                if jobs.read_config(job).output_dir == target:
                    return job
            except (OSError, ValueError, TypeError):  # a job folder being written, or damaged
                continue
    return None


def _refused(message: str, job_dir):
    """Training did not start: say why in the status (a toast alone vanishes), keep the job view."""
    gr.Warning(message)
    status, *rest = poll(job_dir)
    return job_dir, f"**Not started**: {html.escape(message)}", *rest


def cancel_training(job_dir) -> str:
    job = own_job(job_dir)
    return jobs.cancel_job(job) if job else "No training job to cancel."


def resume_training(job_dir):
    """Continue a cancelled, failed or killed job from its last checkpoint."""
    job = own_job(job_dir)
    try:
        if job is None:
            raise ValueError("No training job to resume.")
        jobs.resume_job(job)
    except ValueError as exc:
        gr.Warning(str(exc))
    return poll(job_dir)


# ----------------------------------------------------------------------------- polling -> view


def poll(job_dir, owner: str | None = None):
    """Everything shown about the browser's job: status, progress bar, loss plot, command, metrics,
    side-by-side samples, the adapter menu (refreshed once the job is done) and the timer."""
    job = own_job(job_dir)
    view = jobs.job_view(job) if job else None
    live = view is not None and view.state in LIVE_STATES
    command = shlex.join(jobs.job_command(job)) if job else ""
    if view is not None and view.state in ("cancelled", "died", "failed"):
        command += "\n# continue from the last checkpoint:\n" + shlex.join(jobs.job_command(job, resume=True))
    finished = view is not None and view.state == "finished"
    return (status_text(view, owner), progress_html(view), loss_plot(view.progress if view else []), command,
            metrics_markdown(view.metrics if finished else {}), samples_frame(jobs.read_samples(job) if finished else []),
            gr.update(choices=adapter_choices()) if finished else gr.update(),
            gr.Timer(active=live))


def view_key(job_dir) -> list:
    """What the view of a job depends on; a timer tick redraws only when it changed."""
    job = own_job(job_dir)
    if job is None:
        return [None]
    status = jobs.read_status(job)
    progress = job / "progress.jsonl"
    return [str(job), jobs.job_state(job, status), status.get("step"), status.get("updated"),
            progress.stat().st_size if progress.is_file() else 0]


def tick(job_dir, drawn):
    """The timer's poll: the whole view when the job moved on, else nothing (a redraw of an
    unchanged loss plot and table every second kept a browser core busy)."""
    key = view_key(job_dir)
    if key == drawn:
        return *(gr.skip() for _ in range(len(VIEW_FIELDS))), drawn
    return *poll(job_dir), key



def open_as_operator(job_id, unlocked, profile: gr.OAuthProfile | None = None):
    """Show any job in this tab's view (status, plot, Cancel/Resume), without becoming its owner."""
    job = operator.operator_job(job_id, unlocked, profile)
    return str(job), *poll(str(job))


# ----------------------------------------------------------------------------- compare and push


def compare_passages(job_dir, passages: str, quantize):
    """Base model vs the job's adapter on the user's own passages (blank line between passages)."""
    job = own_job(job_dir)
    view = jobs.job_view(job) if job else None
    if view is None or view.state != "finished" or not view.adapter:
        raise gr.Error("Train an adapter first: the comparison uses the adapter of the finished job.")
    blocks = [b.strip() for b in (passages or "").split("\n\n") if b.strip()]
    if not blocks:
        raise gr.Error("Paste one or more passages, separated by a blank line.")
    if len(blocks) > MAX_COMPARE:
        raise gr.Error(f"Compare at most {MAX_COMPARE} passages at a time (got {len(blocks)}).")
    config = jobs.read_config(job)
    try:
        rows = core.compare_on_passages(config.model_name, view.adapter, blocks, core.read_metadata(view.adapter).get("task"),
                                        quantize=quantize or "auto")
    except (ModelLoadError, ValueError) as exc:
        raise gr.Error(str(exc)) from None
    return pd.DataFrame([[r["prompt"][:400], r["base"], r["adapter"]] for r in rows],
                        columns=["passage", "base model", "adapter"])


def push_to_hub(job_dir, repo_id, private, pasted_token, oauth_token: gr.OAuthToken | None = None):
    """Push the finished job's adapter (adapter files and card only). The token is used for this
    call and then dropped; the token box is cleared."""
    job = own_job(job_dir)
    view = jobs.job_view(job) if job else None
    if view is None or view.state != "finished" or not view.adapter:
        gr.Warning("Train an adapter first: there is nothing to push yet.")
        return "Nothing to push yet.", ""
    try:
        url = core.push_adapter_to_hub(view.adapter, repo_id, token=resolve_token(pasted_token, oauth_token),
                                       private=bool(private))
    except HubError as exc:
        gr.Warning(str(exc))
        return f"**Push failed**: {html.escape(str(exc))}", ""
    return f"Pushed to [{html.escape(repo_id.strip())}]({url}).", ""


# ----------------------------------------------------------------------------- layout


def render(shared: Shared) -> None:
    """Build the tab inside the current gr.Tab; sets ``shared.finetune_file`` to the upload."""
    job = gr.BrowserState(None, storage_key="convo_finetune_job")
    browser_id = gr.BrowserState(None, storage_key="convo_browser_id")  # owner of jobs started without signing in
    gr.Markdown("Train a LoRA adapter on your own question/answer data. The report below shows what the file holds "
                "and what is wrong with it before anything runs.")
    with gr.Row():
        with gr.Column(scale=2):
            upload = gr.File(label=f"Training data (CoQA, SQuAD, chat JSONL, Alpaca, ShareGPT, prompt/completion, "
                                   f"preference pairs; up to {MAX_BYTES // MB} MB)",
                             file_types=list(DATA_SUFFIXES), elem_id="ft-upload")
            with gr.Row(equal_height=True):
                hub_source = gr.Textbox(label="...or a dataset on the Hub", scale=4, elem_id="ft-hub-data",
                                        placeholder="stanfordnlp/coqa (its train split), or user/name/path/file.parquet")
                hub_fetch = gr.Button("Fetch", scale=1, elem_id="ft-hub-fetch")
            hub_status = gr.Markdown(elem_id="ft-hub-status")
            val_upload = gr.File(label="Validation data (optional)", file_types=list(DATA_SUFFIXES),
                                 elem_id="ft-val-upload")
            task = gr.Radio([(label, key) for key, label in TASK_LABELS.items()], value=None, label="Task",
                            elem_id="ft-task")
        report = gr.Markdown(UPLOAD_HINT, elem_id="ft-report")
    shared.finetune_file = upload
    with gr.Accordion("Training settings", open=False):
        ts, lora = core.TrainSettings(), LoraSettings()  # the defaults, declared once in the dataclasses
        # The number fields carry no bounds of Gradio's: TrainSettings checks them and the message shows
        # beside the field. Gradio's own check failed the whole event, Start's outputs included, so an
        # "Error" badge covered the model bar's Adapter menu until a reload.
        with gr.Row():
            name = gr.Textbox(label="Adapter name", placeholder="e.g. curious-qg", info=NAME_INFO, elem_id="ft-name")
            qlora = gr.Radio(QLORA_CHOICES, value={True: "on", False: "off"}.get(ts.qlora, "auto"), label="QLoRA", elem_id="ft-qlora")
        with gr.Row():
            epochs = gr.Number(ts.epochs, label="Epochs", elem_id="ft-epochs")
            max_steps = gr.Number(ts.max_steps or 0, label="Max steps (0: use epochs)", precision=0, elem_id="ft-max-steps")
            batch_size = gr.Slider(1, 64, ts.batch_size, step=1, label="Batch size", elem_id="ft-batch-size")
            grad_accum = gr.Slider(1, 64, ts.grad_accum, step=1, label="Gradient accumulation")
            learning_rate = gr.Number(ts.learning_rate, label="Learning rate", elem_id="ft-lr")
        with gr.Row():
            max_length = gr.Slider(64, 4096, ts.max_length, step=64, label="Max tokens per example", elem_id="ft-max-length")
            val_fraction = gr.Slider(0, 0.5, ts.val_fraction, step=0.05, label="Validation share (without a validation file)")
            eval_every = gr.Number(ts.eval_every, label="Validate every N steps", precision=0,
                                   elem_id="ft-eval-every")
            save_every = gr.Number(ts.save_every, label="Checkpoint every N steps", precision=0,
                                   elem_id="ft-save-every")
            patience = gr.Number(ts.early_stopping_patience, label="Early stopping patience (0: off)", precision=0,
                                 elem_id="ft-patience")
            seed = gr.Number(ts.seed, label="Seed", precision=0)
        with gr.Row():
            lora_r = gr.Slider(1, 256, lora.r, step=1, label="LoRA rank r")
            lora_alpha = gr.Number(lora.alpha, label="LoRA alpha", precision=0)
            lora_dropout = gr.Slider(0, 0.5, lora.dropout, step=0.01, label="LoRA dropout")
    plan = gr.Markdown(elem_id="ft-plan")
    with gr.Row():
        start = gr.Button("Start training", variant="primary", interactive=False, elem_id="ft-start")
        cancel = gr.Button("Cancel", elem_id="ft-cancel")  # not a red alarm while nothing runs
        resume = gr.Button("Resume", elem_id="ft-resume")
    status = gr.Markdown("No training job yet.", elem_id="ft-status")
    with gr.Accordion("Open a job by its id", open=False):
        with gr.Row():
            job_id = gr.Textbox(label="Job id", placeholder="e.g. 20260101-120000-0123456789abcdef",
                                elem_id="ft-job-id", scale=4)
            open_job = gr.Button("Open job", elem_id="ft-open-job", scale=1)
    with gr.Accordion("All jobs (operator)", open=False, elem_id="ft-operator"):
        with gr.Row():
            operator_key = gr.Textbox(label="Operator key (not needed when signed in as an operator)", type="password",
                                      elem_id="ft-operator-key", scale=4)
            show_all = gr.Button("Show all jobs", elem_id="ft-show-all", scale=1)
        operator_status = gr.Markdown(elem_id="ft-operator-status")
        all_jobs = gr.Dataframe(pd.DataFrame(columns=operator.COLUMNS), interactive=False, wrap=False,
                                elem_id="ft-all-jobs")
        with gr.Row():
            operator_pick = gr.Dropdown([], label="Job", elem_id="ft-operator-job", scale=4)
            operator_open = gr.Button("Open", elem_id="ft-operator-open", scale=1)
            operator_cancel = gr.Button("Cancel job", elem_id="ft-operator-cancel", scale=1)
    unlocked = gr.State(False)  # server-side: this page was unlocked with the operator key
    progress = gr.HTML(elem_id="ft-progress")
    plot = gr.LinePlot(loss_frame([]), x="step", y="loss", color="split", title="Loss", height=280,
                       elem_classes=[NO_LOSS], elem_id="ft-loss-plot")  # in view from a job's first loss
    command = gr.Code(label="Equivalent command", language="shell", interactive=False, elem_id="ft-command",
                      elem_classes=[OUTPUT_BOX])
    metrics = gr.Markdown(elem_id="ft-metrics")
    # widths: the passage's text alone filled the tab and pushed the answers compared past its edge
    samples = gr.Dataframe(samples_frame([]), label="Held-out examples: base model vs adapter", wrap=True,
                           column_widths=["34%", "22%", "22%", "22%"], interactive=False, elem_id="ft-samples")
    with gr.Accordion("Compare on your own passages", open=False):
        passages = gr.Textbox(lines=5, label="Passages (blank line between; for question answering, the last line "
                                             "of each is the question)", elem_id="ft-compare-input")
        compare = gr.Button("Compare base and adapter", elem_id="ft-compare")
        compared = gr.Dataframe(label="Base model vs adapter", wrap=True, interactive=False,
                                elem_id="ft-compare-output")
    with gr.Accordion("Push the adapter to the Hugging Face Hub", open=False):
        with gr.Row():
            repo = gr.Textbox(label="Repository", placeholder="your-name/curious-adapter", elem_id="ft-push-repo")
            private = gr.Checkbox(True, label="Private", elem_id="ft-push-private")
            token = gr.Textbox(label="Token (used once, never stored)", type="password",
                               placeholder="hf_... (not needed when signed in or with HF_TOKEN)", elem_id="ft-push-token")
        push = gr.Button("Push", elem_id="ft-push")
        push_status = gr.Markdown(elem_id="ft-push-status")
    timer = gr.Timer(POLL_S, active=False)
    drawn = gr.State(None)  # view_key of what the timer last drew

    settings_inputs = [task, epochs, max_steps, batch_size, grad_accum, learning_rate, max_length, val_fraction,
                       eval_every, save_every, patience, seed, qlora, lora_r, lora_alpha, lora_dropout]
    view_outputs = [status, progress, plot, command, metrics, samples, shared.adapter, timer]  # VIEW_FIELDS
    inspect_inputs = [upload, val_upload, task, max_length, shared.model, shared.adapter, shared.quantize]
    plan_inputs = [upload, val_upload, *settings_inputs]
    gr.on([upload.change, val_upload.change], inspect_upload, inspect_inputs, [report, task, start],
          api_name="finetune_inspect").then(plan_text, plan_inputs, plan, api_visibility="private",
                                            show_progress="hidden")  # the count the report found
    task.input(inspect_upload, inspect_inputs, [report, task, start], api_visibility="private")
    gr.on([hub_fetch.click, hub_source.submit], fetch_hub_data, hub_source, [upload, val_upload, hub_status],
          api_visibility="private")
    gr.on([c.change for c in settings_inputs], plan_text, plan_inputs, plan, api_visibility="private",
          show_progress="hidden")
    # the token report counts against "Max tokens per example": recount when it changes (on change, not
    # release: a value typed into the slider's box could send release with the old value; the last change
    # always runs, so a drag ends with the count for where it stopped)
    max_length.change(inspect_upload, inspect_inputs, [report, task, start], api_visibility="private",
                      trigger_mode="always_last", show_progress="hidden")
    # the fields an error names show it beside them while the values clash, and after a refused Start
    checked = dict(zip(SETTING_NAMES, settings_inputs))
    checked_fields = [checked[name] for name in CHECKED_FIELDS]
    start.click(start_for_owner, [browser_id, upload, val_upload, name, job, shared.model, *settings_inputs],
                [browser_id, job, *view_outputs], api_name="finetune_start").then(
        check_fields, settings_inputs, checked_fields, api_visibility="private", show_progress="hidden")
    gr.on([c.change for c in checked_fields], check_fields, settings_inputs, checked_fields,
          api_visibility="private", show_progress="hidden")
    name.change(name_info, name, name, queue=False, api_visibility="private", show_progress="hidden")
    for field in (eval_every, patience):
        field.input(follow_validation, [eval_every, save_every, patience], save_every, queue=False,
                    api_visibility="private")
    open_job.click(reclaim, [job_id, browser_id], [browser_id, job, *view_outputs], api_visibility="private")
    # A new tab, a reload, another window of the same browser: show this user's job (on page load, and
    # when the tab is opened, by which time the browser's stored values have surely arrived).
    attach_event = (attach, [job, browser_id, unlocked], [job, *view_outputs])
    shared.extra.setdefault("on_load", []).append(attach_event)
    shared.extra["on_finetune_select"] = attach_event
    show_all.click(operator.show_all_jobs, [operator_key, unlocked], [unlocked, operator_key, all_jobs, operator_pick,
                                                             operator_status], api_name="finetune_all_jobs")
    operator_open.click(open_as_operator, [operator_pick, unlocked], [job, *view_outputs], api_visibility="private")
    operator_cancel.click(operator.cancel_as_operator, [operator_pick, unlocked], [operator_status, all_jobs],
                          api_visibility="private")
    cancel.click(cancel_training, job, status, api_name="finetune_cancel")
    resume.click(resume_training, job, view_outputs, api_name="finetune_resume")
    timer.tick(tick, [job, drawn], [*view_outputs, drawn], api_visibility="private", show_progress="hidden")
    # Reattach after a reload: the browser's stored job is shown (and followed while it runs).
    job.change(poll, job, view_outputs, api_visibility="private", show_progress="hidden")
    compare.click(compare_passages, [job, passages, shared.quantize], compared, api_name="finetune_compare")
    push.click(push_to_hub, [job, repo, private, token], [push_status, token], api_name="finetune_push")
