"""The Fine-tune tab's data: an upload's report (and its example count, kept for the plan), and a
Hub dataset's files fetched into the upload boxes. The tab (convo.ui.finetune) lays them out.
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from ..data import MAX_BYTES, MB, load_examples, validate_file
from ..data.report import human_size
from ..engine import POOL, ModelLoadError
from ..hub import HubError, resolve_token
from ..hub_data import dataset_files, dataset_source
from .common import spec_from

UPLOAD_HINT = (f"Upload a CoQA, simplified CoQA, SQuAD, chat JSONL, Alpaca, ShareGPT, prompt/completion or preference "
               f"pairs file (`chosen` and `rejected`: the chosen conversation is trained on; up to "
               f"{MAX_BYTES // MB} MB) "
               "to see what it holds (CoQA's training set as Hugging Face `datasets` writes it is about 20 MB). "
               "JSON, JSON Lines, or Parquet as the Hub stores datasets: the Parquet files of `stanfordnlp/coqa` "
               "and `rajpurkar/squad` upload as they are, and so does a dataset saved with `datasets`' `save_to_disk` (its "
               "`data-00000-of-00001.arrow` file). A spreadsheet works too, as an Excel workbook (its first "
               "sheet) or saved as CSV or TSV, its first row naming the columns: `context, question, answer`, "
               "`instruction, input, output`, or a message and its reply (`prompt, completion` or "
               "`question, answer`). Any of these may be gzipped (`train.jsonl.gz`, as some Hub datasets store them). "
               "A larger one, such as the official CoQA or SQuAD 2.0 training file (42-49 MB), trains from the "
               "command line, which reads files of any size: `python -m training.finetune --train_data FILE`.")
"""The report before an upload. Gradio refuses a file over the cap with a toast that fades and leaves
the upload box saying only "Error": this text stays."""


def upload_path(file) -> str | None:
    """A gr.File value (path string, or an object with .name/.path) as a path."""
    if file is None:
        return None
    if isinstance(file, str):
        return file
    return getattr(file, "path", None) or getattr(file, "name", None)


def _loaded_tokenizer(model: str | None, adapter: str | None, quantize: str | None):
    """The tokenizer of the model bar's model if it is already loaded (token lengths), else None:
    reading a report never starts a model download."""
    try:
        spec = spec_from(model, adapter, quantize)
    except ValueError:
        return None
    for loaded in POOL.loaded():
        if loaded.name == spec.name:
            try:
                return POOL.get(loaded).tokenizer
            except ModelLoadError:
                return None
    return None


def inspect_upload(file, val_file, task, max_length, model=None, adapter=None, quantize=None):
    """Validate the uploaded file(s): the report, the task to use, and whether training may start."""
    path = upload_path(file)
    if not path:
        return UPLOAD_HINT, gr.update(), \
            gr.update(interactive=False)
    tokenizer = _loaded_tokenizer(model, adapter, quantize)
    # One parse: a task that does not fit the file (chat on passages) falls back to the format's default.
    report = validate_file(path, task=task or None, tokenizer=tokenizer, max_length=int(max_length or 512),
                           adapt_task=True)
    task = report.task or task
    if report.ok:  # the plan below counts the same examples: no second parse
        _remember_count(path, report.task, report.examples)
    parts = [report.summary()]
    if tokenizer is None and report.ok:
        parts.append("_Token lengths appear here once the model is loaded (Load in the model bar)._")
    ok = report.ok
    val_path = upload_path(val_file)
    if val_path:
        val_report = validate_file(val_path, task=task, tokenizer=tokenizer, max_length=int(max_length or 512))
        if val_report.ok:
            _remember_count(val_path, task, val_report.examples)
        parts.append("**Validation file**\n\n" + val_report.summary())
        ok = ok and val_report.ok
    return "\n\n".join(parts), gr.update(value=task if report.ok else None), gr.update(interactive=ok)


def example_count(path: str, task: str | None) -> tuple[int, str]:
    """How many training examples a file gives for ``task`` (None: its format's), and the task: the
    report's count when the upload's report has it, else one parse per file and task, not one per
    settings change (a 108k-question file takes seconds, and the plan took 16.7 s after the report)."""
    key = _count_key(path, task)
    if key not in _COUNTS:
        examples, report = load_examples(path, task)
        _remember_count(path, report.task, len(examples), also_for=task)
    return _COUNTS[key]


_COUNTS: dict[tuple, tuple[int, str]] = {}


def _count_key(path: str, task: str | None) -> tuple:
    stat = Path(path).stat()  # a new file at the same path is a new key
    return str(path), stat.st_size, stat.st_mtime_ns, task


def _remember_count(path: str, task: str, count: int, also_for: str | None = None) -> None:
    if len(_COUNTS) >= 64:
        _COUNTS.clear()
    for key_task in {task, also_for}:
        _COUNTS[_count_key(path, key_task)] = (count, task)


def fetch_hub_data(source, oauth_token: gr.OAuthToken | None = None):
    """A Hub dataset's training file into the upload box, and, for a dataset named by its id, its
    validation split's into the validation box; the report and plan follow as for uploads. A split in
    shards comes as one file. The sign-in's token or $HF_TOKEN (a gated dataset) serves this call only."""
    try:
        fetched = dataset_files(source, token=resolve_token(None, oauth_token), max_bytes=MAX_BYTES)
    except HubError as exc:
        return gr.skip(), gr.skip(), f"**Could not fetch it**: {html.escape(str(exc))}"
    train = _file_text(fetched.train, fetched.train_parts)
    if fetched.validation:
        return (str(fetched.train), str(fetched.validation),
                f"Fetched {train} and {_file_text(fetched.validation, fetched.validation_parts)} from the Hub.")
    if fetched.note:  # the training file stands
        return str(fetched.train), None, (f"Fetched {train} from the Hub. Validation: {html.escape(fetched.note)} "
                                          "Part of the training file is held out.")
    if dataset_source(source)[2]:
        return str(fetched.train), gr.skip(), f"Fetched {train} from the Hub."  # the validation box stays the user's
    return str(fetched.train), None, (f"Fetched {train} from the Hub. It has no validation split: part of the "
                                      "training file is held out.")


def _file_text(path: Path, parts: int = 1) -> str:
    joined = f", {parts} files joined" if parts > 1 else ""
    return f"`{html.escape(path.name)}` ({human_size(path.stat().st_size)}{joined})"
