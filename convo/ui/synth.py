"""The Synthetic tab: make training conversations from personas x seed messages or from keyword lists.

Preview the first three, run the whole set many at a time (progress, kept/dropped counts, ETA, Cancel;
a rerun in the same session resumes), then download, push to the Hub or send to Fine-tune.

Why one module: a tab is a sub-Blocks in one file (the house style); its handlers are the form's,
and most of its length is the form itself.
"""
from __future__ import annotations

import html
import json
import os
import shlex
import tempfile
import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from .. import hub
from .. import synth as core
from ..engine.generation import Stop
from ..engine import ModelLoadError, get_model
from ..engine.remote import RemoteError, for_user
from .common import OUTPUT_BOX, Shared, output_file, spec_from

PREVIEW_COUNT = 3
TABLE_ROWS = 200
TABLE_HEADERS = ["#", "kept", "word / persona", "messages", "conversation", "why dropped"]
"""The seed is not a column: it opens the conversation, whose turns each start a line."""
DEFAULT_PERSONA_ROWS = [
    ["learn", "wants to understand a topic well", "curious", "asks many questions and follows up"],
    ["learn", "wants to understand a topic well", "skeptical", "doubts answers and asks for reasons"],
    ["vent", "wants to talk about a frustrating day", "curious", "asks many questions and follows up"],
    ["vent", "wants to talk about a frustrating day", "skeptical", "doubts answers and asks for reasons"],
]
DEFAULT_SEEDS = "I want to start running but I keep giving up.\nWhy is the sky blue?"
DEFAULT_WORDS = "apple\nriver\nmusic\ngarden"

# Cancel flags of running generations, keyed by Gradio session (process-wide, like Chat's Stop).
_running: dict[str, Stop] = {}
_running_lock = threading.Lock()


@dataclass
class Form:
    """The tab's inputs that describe a job, in the order handlers receive their values."""

    mode: gr.Radio
    seeds: gr.Textbox
    personas: gr.Dataframe
    strategy: gr.Radio
    turns: gr.Slider
    samples: gr.Number
    template: gr.Textbox
    assistant_prompt: gr.Textbox
    restyle: gr.Checkbox
    restyle_template: gr.Textbox
    restyle_max_chars: gr.Number
    kw_name: gr.Textbox
    prompt_lines: gr.Textbox
    words: gr.Textbox
    exclude: gr.Textbox
    role_user: gr.Textbox
    role_assistant: gr.Textbox
    n_per_word: gr.Number
    kw_strategy: gr.Radio
    kw_turns: gr.Slider
    max_attempts: gr.Number
    temperature: gr.Slider
    max_new_tokens: gr.Number
    batch_size: gr.Number
    seed: gr.Number

    def inputs(self) -> set:
        """The components, as a set: Gradio then hands the handler one dict of their values."""
        return set(vars(self).values())

    def values(self, data: dict) -> "FormValues":
        """The form's plain values out of a handler's input dict."""
        return FormValues(**{name: data[component] for name, component in vars(self).items()})


@dataclass
class FormValues:
    """Plain values of a ``Form`` (what the handlers and tests build jobs from).


    Every default comes from the job and sampling dataclasses of convo.synth (declared once there);
    only the tab's own conventions live here (``0`` max new tokens and ``-1`` seed mean "none").
    """

    mode: str = core.PERSONA
    seeds: str = DEFAULT_SEEDS
    personas: object = None
    strategy: str = core.PersonaJob.strategy
    turns: int = core.PersonaJob.turns
    samples: int = core.PersonaJob.samples
    template: str = core.DEFAULT_AGENT_TEMPLATE
    assistant_prompt: str = core.PersonaJob.assistant_prompt
    restyle: bool = False
    restyle_template: str = core.DEFAULT_RESTYLE_TEMPLATE
    restyle_max_chars: int = core.PersonaJob.restyle_max_chars
    kw_name: str = "words"
    prompt_lines: str = "\n".join(core.DEFAULT_KEYWORD_PROMPT_LINES)
    words: str = DEFAULT_WORDS
    exclude: str = "\n".join(core.DEFAULT_EXCLUDE)
    role_user: str = core.KeywordJob.roles[0]
    role_assistant: str = core.KeywordJob.roles[1]
    n_per_word: int = core.KeywordJob.n_per_word
    kw_strategy: str = core.KeywordJob.strategy
    kw_turns: int = core.KeywordJob.turns
    max_attempts: int | None = None
    """None: the mode's job default (the tab shows the persona one and switches it with the mode)."""
    temperature: float = core.SynthSampling.temperature
    max_new_tokens: int = core.SynthSampling.max_new_tokens or 0
    batch_size: int = field(default_factory=lambda: core.SynthSampling().batch_size)
    seed: int = -1 if core.SynthSampling.seed is None else core.SynthSampling.seed


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _rows(table) -> list[list]:
    """Dataframe value (a pandas DataFrame, a dict with ``data`` or a list of rows) -> list of rows."""
    if table is None:
        return []
    if hasattr(table, "values") and hasattr(table, "columns"):
        return table.values.tolist()
    if isinstance(table, dict):
        return list(table.get("data") or [])
    return [list(row) for row in table]


def _whole(value, name: str, default: int) -> int:
    if value in (None, ""):
        return default
    number = float(value)
    if number != int(number):
        raise core.ConfigError(f"{name}: expected a whole number, got {value}")
    return int(number)


def job_from(values: FormValues) -> core.KeywordJob | core.PersonaJob:
    """The job the form describes; raises ConfigError naming the field at fault."""
    if values.mode == core.KEYWORD:
        config = core.keyword_config_from_dict({
            "name": (values.kw_name or "").strip() or "words", "prompt_lines": _lines(values.prompt_lines),
            "words": _lines(values.words), "exclude": _lines(values.exclude)}, source="keyword config")
        return core.KeywordJob(config, roles=(values.role_user or "", values.role_assistant or ""),
                               n_per_word=_whole(values.n_per_word, "conversations per word", core.KeywordJob.n_per_word),
                               max_attempts=_whole(values.max_attempts, "attempts", core.KeywordJob.max_attempts),
                               strategy=values.kw_strategy or core.KeywordJob.strategy,
                               turns=_whole(values.kw_turns, "turns", core.KeywordJob.turns))
    restyle_template = values.restyle_template if values.restyle else ""
    return core.PersonaJob(
        core.parse_seed_text(values.seeds) or [""], core.personas_from_rows(_rows(values.personas)),
        turns=_whole(values.turns, "turns", core.PersonaJob.turns), strategy=values.strategy or core.PersonaJob.strategy,
        template=values.template or "", assistant_prompt=values.assistant_prompt or "",
        restyle_template=restyle_template or "", restyle_max_chars=_whole(values.restyle_max_chars, "max characters",
                                                                         core.PersonaJob.restyle_max_chars),
        samples=_whole(values.samples, "conversations per seed and persona", core.PersonaJob.samples),
        max_attempts=_whole(values.max_attempts, "attempts", core.PersonaJob.max_attempts))


def sampling_from(job, values: FormValues):
    seed = _whole(values.seed, "seed", -1)
    tokens = _whole(values.max_new_tokens, "max new tokens", 0)
    return core.default_sampling(job, tokens or None, temperature=float(values.temperature),
                                 seed=seed if seed >= 0 else None)


# --------------------------------------------------------------------------- imports


def import_keyword_config(file):
    """Fill the keyword fields from an uploaded keyword config."""
    if not file:
        return gr.update(), gr.update(), gr.update(), gr.update(), ""
    try:
        config = core.load_keyword_config(_path(file))
    except core.ConfigError as exc:
        gr.Warning(str(exc))
        return gr.update(), gr.update(), gr.update(), gr.update(), f"**Error:** {exc}"
    note = f"Imported **{config.name}**: {len(config.words)} words, {len(config.exclude)} exclude entries."
    if config.model:
        note += f" The config names model `{config.model}`; the model bar above decides which model runs."
    return (config.name, "\n".join(config.prompt_lines), "\n".join(config.words), "\n".join(config.exclude), note)


ZIP_MAX_FILES = 500
ZIP_MAX_BYTES = 20 * 1024 * 1024


def _unzip(path: Path) -> list[Path]:
    """The files of an uploaded .zip, by their own names (folders flattened), in a fresh folder: no
    member can be written outside it, and a zip bomb stops at the caps."""
    folder = Path(tempfile.mkdtemp(prefix="persona-zip-", dir=Path(new_output_path()).parent))
    out, total = [], 0
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                name = Path(member.filename).name
                if member.is_dir() or not name or name.startswith(".") or "__MACOSX" in member.filename:
                    continue
                total += member.file_size
                if len(out) >= ZIP_MAX_FILES or total > ZIP_MAX_BYTES:
                    raise core.ConfigError(f"{path.name}: too large (at most {ZIP_MAX_FILES} files, "
                                           f"{ZIP_MAX_BYTES // 2**20} MB unpacked)")
                target = folder / name
                target.write_bytes(archive.read(member))
                out.append(target)
    except zipfile.BadZipFile:
        raise core.ConfigError(f"{path.name}: not a valid .zip file") from None
    return out


def _uploaded_templates(paths: list[Path], named: set[str]) -> dict[str, Path]:
    """Generation and restyle templates uploaded beside the config but not named in it, by file name
    (``...restyle...`` is the restyle template; ``...template...``/``...prompt...`` the generation one)."""
    found: dict[str, Path] = {}
    for path in paths:
        stem = path.stem.lower()
        if path.suffix.lower() == ".json" or path.name in named:
            continue
        if "restyle" in stem:
            found.setdefault("restyle_template", path)
        elif "template" in stem or "prompt" in stem:
            found.setdefault("template", path)
    return found


def import_persona_config(files, template: str, restyle_template: str):
    """Fill the persona grid (and templates) from an uploaded persona config.

    Description files named by ``path`` must be uploaded together with the config (several files, or
    one .zip holding them): an uploaded config never reads anything else from the server's disk.
    Generation/restyle templates uploaded beside it are used (and the note says so). Problems are
    reported once, in the status.
    """
    keep = gr.update(), gr.update(), gr.update(), gr.update()
    try:
        paths = []
        for path in (_path(f) for f in (files or []) if f):
            paths += _unzip(path) if path.suffix.lower() == ".zip" else [path]
        configs = [p for p in paths if p.suffix.lower() == ".json"]
        if not configs:
            return (*keep, "**Error:** upload the persona config (.json) together with its description files "
                           "(or one .zip holding them)." if paths else "")
        uploaded = {p.name: p for p in paths}
        data = core.read_json(configs[0])  # parsed once: the personas and the files it names
        config = core.persona_config_from_dict(data, source=configs[0].name, files=uploaded)
        named = {Path(n).name for n in core.described_files(data)}
        extra = _uploaded_templates(paths, named)
        used = []
        if extra.get("template") and not config.template:
            config.template = core.check_template(core.read_text(extra["template"]).strip(),
                                                  core.PERSONA_FIELDS, extra["template"].name)
            used.append(f"the generation template from **{extra['template'].name}**")
        if extra.get("restyle_template") and not config.restyle_template:
            config.restyle_template = core.check_template(core.read_text(extra["restyle_template"]).strip(),
                                                          core.RESTYLE_FIELDS, extra["restyle_template"].name)
            used.append(f"the restyle template from **{extra['restyle_template'].name}**")
    except (core.ConfigError, UnicodeDecodeError, OSError) as exc:
        return (*keep, f"**Error:** {exc}")
    note = f"Imported {len(config.personas)} personas from **{configs[0].name}**."
    if used:
        note += " Using " + " and ".join(used) + "."
    unused = sorted(set(uploaded) - named - {configs[0].name} - {p.name for p in extra.values()})
    if unused:
        note += f" Not used: {', '.join(unused)}."
    if config.llm:
        note += f" The config names model `{config.llm}`; the model bar above decides which model runs."
    restyle = gr.update(value=True) if config.restyle_template else gr.update()
    return (core.persona_rows(config.personas), config.template or template, config.restyle_template or restyle_template,
            restyle, note)


def load_seed_file(file, current: str):
    """Put the seeds of an uploaded .txt/.csv/.xlsx/.jsonl/.json/.parquet/.arrow file into the seed box,
    one a line: a seed's own line breaks become spaces (the box read "Hi.\nA question." as two seeds).
    A file that gives none leaves the box as it was and the picker empty (it named the file as if
    its seeds were in)."""
    if not file:
        return current, gr.skip()
    try:
        return "\n".join(" ".join(seed.split()) for seed in core.read_seeds(_path(file))), gr.skip()
    except core.ConfigError as exc:
        gr.Warning(str(exc))
        return current, None


def make_grid(motivations, dispositions):
    """The persona grid: every motivation (name, description) crossed with every disposition."""
    motivation_rows = _named_rows(motivations, "motivations")
    disposition_rows = _named_rows(dispositions, "dispositions")
    if not motivation_rows or not disposition_rows:
        gr.Warning("Give at least one motivation and one disposition.")
        return gr.update()
    return core.persona_rows(core.grid(motivation_rows, disposition_rows))


def _named_rows(table, what: str) -> list[tuple[str, str]]:
    rows = []
    for number, row in enumerate(_rows(table), start=1):
        cells = [("" if c is None else str(c)).strip() for c in list(row) + ["", ""]][:2]
        if cells[0]:
            rows.append((cells[0], cells[1]))
        elif cells[1]:
            raise gr.Error(f"{what} row {number}: missing name")
    return rows


def switch_strategy(strategy: str, template: str):
    """Swap the template for the other strategy's default, unless the user has edited it."""
    defaults = {core.DEFAULT_AGENT_TEMPLATE.strip(), core.DEFAULT_SCRIPT_TEMPLATE.strip(), ""}
    new_template = core.default_template(strategy) if (template or "").strip() in defaults else template
    return new_template, gr.update(visible=strategy == core.AGENTS)


def switch_mode(mode: str, max_attempts):
    """Show the mode's fields; attempts follow the mode's default unless the user changed them. The
    other mode's preview, progress, status and table go (its file stays: a run in the new mode writes
    a new one, and a run back in the old mode adds to it)."""
    persona = mode == core.PERSONA
    job, other = (core.PersonaJob, core.KeywordJob) if persona else (core.KeywordJob, core.PersonaJob)
    attempts = job.max_attempts if max_attempts in (None, "", other.max_attempts) else max_attempts
    return gr.update(visible=persona), gr.update(visible=not persona), attempts, "", "", "", []


def _path(file) -> Path:
    return Path(file if isinstance(file, str) else getattr(file, "name", None) or file["path"])


# --------------------------------------------------------------------------- preview and run


def _describe(result: core.Result) -> str:
    item = result.item
    return item.word if item.word is not None else item.persona.label


def result_rows(results, start: int = 1) -> list[list]:
    """Output-table rows for results (kept or not)."""
    return [_table_row(number, result.kept, _describe(result), result.messages, result.faults)
            for number, result in enumerate(results, start=start)]


def _table_row(number: int, kept: bool, about: str, messages: list[dict], faults=()) -> list:
    """One row of the output table (``TABLE_HEADERS``)."""
    return [number, "yes" if kept else "no", about, len(messages), core.transcript(messages)[:2000], "; ".join(faults)]


def saved_rows(out_path: str) -> list[list]:
    """Output-table rows for the newest conversations already in ``out_path`` (all kept), newest first."""
    try:
        records = core.read_records(out_path)[-TABLE_ROWS:]
    except (OSError, core.ConfigError):
        return []
    rows = []
    for number, record in enumerate(records, start=1):
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        persona = meta.get("persona") if isinstance(meta.get("persona"), dict) else {}
        about = meta.get("word") or " / ".join(str(persona.get(k, "")) for k in ("motivation", "disposition"))
        rows.append(_table_row(number, True, about, record["messages"]))
    return rows[::-1]


def preview_markdown(results) -> str:
    parts = []
    for number, result in enumerate(results, start=1):
        verdict = "kept" if result.kept else f"dropped: {'; '.join(result.faults)}"
        body = "\n".join(f"> **{m['role']}:** {html.escape(m['content'])}  " for m in result.messages) or "> (no turns)"
        if result.restyled:
            body += "\n>\n> *Restyled:*\n" + "\n".join(
                f"> **{m['role']}:** {html.escape(m['content'])}  " for m in result.restyled)
        parts.append(f"**{number}. {html.escape(_describe(result))}** ({verdict})\n\n{body}")
        if not result.kept and result.raw:
            parts.append(f"<details><summary>model output</summary>\n\n```\n{result.raw}\n```\n</details>")
    return "\n\n".join(parts) or "Nothing to preview."


PREVIEW_FAILED = "Preview failed (below): nothing was written."


def _preview_failed(exc: Exception):
    gr.Warning(str(exc))
    return f"**Error:** {exc}", gr.update(), gr.update(), PREVIEW_FAILED


def preview(model, adapter, quantize, values: FormValues, token: str | None = None):
    """Generate the first three conversations (nothing is written) so prompts can be checked first.
    ``token``: the signed-in user's, which pays for an Inference Providers model. Returns (preview,
    table, progress bar, status): the status says what the preview did, where a run's "Done: ..."
    stood (it read as if the preview had written, or failed with nothing said of it); a preview that
    fails leaves the run's bar and table as they were."""
    try:
        job = job_from(values)
        sampling = sampling_from(job, values)
        batch_size = _whole(values.batch_size, "batch size", core.SynthSampling().batch_size)
        lm = for_user(get_model(spec_from(model, adapter, quantize)), token)
    except (core.ConfigError, ValueError, ModelLoadError) as exc:
        return _preview_failed(exc)
    try:
        results = core.preview(lm, job, PREVIEW_COUNT, sampling, batch_size=batch_size)
    except RemoteError as exc:
        return _preview_failed(exc)
    kept = sum(r.kept for r in results)
    status = (f"Preview: {kept} of the first {len(results)} kept. Nothing was written: Run writes the "
              f"whole set.")
    return preview_markdown(results), result_rows(results), "", status


def progress_html(progress: core.Progress | None) -> str:
    """A progress bar with kept/dropped counts and ETA."""
    if progress is None:
        return ""
    total = progress.total
    state = "finished" if progress.finished else "cancelled" if progress.cancelled else "running"
    if total:
        bar = f'<progress value="{progress.done}" max="{total}" style="width:100%"></progress>'
    elif state != "running":  # a rerun with every conversation already there: full, not a grey "0/0"
        bar = '<progress value="1" max="1" style="width:100%"></progress>'
    else:
        bar = '<progress style="width:100%"></progress>'
    return (f'<div class="synth-progress" data-state="{state}" data-kept="{progress.kept}" '
            f'data-dropped="{progress.dropped}">{bar}<div>{html.escape(progress.summary())}</div></div>')


def new_output_path() -> str:
    """A fresh output file for this session, under Gradio's temp dir (so it can be downloaded)."""
    base = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    folder = base / "convo-synth" / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / "conversations.jsonl")


def cli_command(job, out_path: str, model: str, sampling, batch_size: int) -> str:
    """The equivalent ``python -m convo synth`` command; writes the config files it needs next to the output."""
    folder = Path(out_path).parent
    if isinstance(job, core.KeywordJob):
        config = folder / "keywords.json"
        config.write_text(json.dumps(job.config.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        parts = ["--config", str(config), "--n-per-word", str(job.n_per_word), "--roles", ",".join(job.roles),
                 "--strategy", job.strategy, "--turns", str(job.turns), "--max-attempts", str(job.max_attempts)]
    else:
        config, seeds = folder / "personas.json", folder / "seeds.txt"
        data = core.persona_config_to_dict(job.personas, llm=model, template=job.template,
                                           restyle_template=job.restyle_template or None)
        config.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        seeds.write_text("\n".join(s.replace("\n", " ") for s in job.seeds) + "\n", encoding="utf-8")
        parts = ["--personas", str(config), "--seeds", str(seeds), "--turns", str(job.turns), "--strategy",
                 job.strategy, "--samples", str(job.samples), "--max-attempts", str(job.max_attempts)]
    parts += ["--out", out_path, "--model", model, "--batch-size", str(batch_size), "--max-new-tokens",
              str(sampling.max_new_tokens), "--temperature", str(sampling.temperature)]
    if sampling.seed is not None:
        parts += ["--seed", str(sampling.seed)]
    return "python -m convo synth " + " ".join(shlex.quote(p) for p in parts)


def run(model, adapter, quantize, out_path, previous_config, values: FormValues, request: gr.Request = None,
        token: str | None = None):
    """Generate the whole set into this session's output file, streaming progress as each conversation ends.

    Yields (progress bar, status, output table, download file, output path, CLI command, dataset config).
    Running again with the same output resumes: finished conversations are skipped. ``token``: the
    signed-in user's, which pays for an Inference Providers model (used per call, never written).
    """
    try:
        job = job_from(values)
        sampling = sampling_from(job, values)
        batch_size = _whole(values.batch_size, "batch size", core.SynthSampling().batch_size)
        lm = for_user(get_model(spec_from(model, adapter, quantize)), token)
    except (core.ConfigError, ValueError, ModelLoadError) as exc:
        gr.Warning(str(exc))
        yield "", f"**Error:** {exc}", gr.update(), gr.update(), out_path, gr.update(), gr.update()
        return
    if out_path and previous_config and previous_config.get("mode") != job.mode:
        out_path = None  # persona and keyword conversations do not share a file
    out_path = out_path or new_output_path()
    command = cli_command(job, out_path, core.model_label(lm), sampling, batch_size)
    config = core.dataset_config(job, core.card_model(lm), sampling)  # goes into the pushed card
    stop = Stop()
    session = request.session_hash if request is not None else "local"
    with _running_lock:
        busy = session in _running
        if not busy:
            _running[session] = stop
    if busy:  # two runs appending to one file would both make the same conversations
        gr.Warning("A run is already going in this session: cancel it first.")
        yield gr.update(), "A run is already going: cancel it first.", gr.update(), gr.update(), out_path, \
            gr.update(), gr.update()
        return
    rows: list[list] = []
    try:
        for progress in core.run(lm, job, out_path, sampling=sampling, batch_size=batch_size, stop=stop):
            rows = (result_rows(progress.latest, start=len(rows) + 1) + rows)[:TABLE_ROWS] if progress.latest else rows
            finished = progress.finished or progress.cancelled
            status = _run_status(progress, out_path)
            # a run that ends with nothing new shows the file's newest (it emptied the table under "Done: 0 new")
            table = rows or (saved_rows(out_path) if finished else [])
            yield (progress_html(progress), status, table, out_path if finished else gr.update(), out_path, command,
                   config)
    except core.ConfigError as exc:
        gr.Warning(str(exc))
        yield "", f"**Error:** {exc}", gr.update(), gr.update(), None, command, config
    except RemoteError as exc:  # the server went away: what is written is whole, a rerun resumes
        gr.Warning(str(exc))
        yield gr.update(), f"**Error:** {exc} Finished conversations are saved: run again to resume.", \
            gr.update(), out_path, out_path, command, config
    finally:
        with _running_lock:
            _running.pop(session, None)


def preview_for_user(oauth: gr.OAuthToken | None, *inputs):
    """``preview`` with the signed-in user's token (Gradio fills it in by its type), which pays for an
    Inference Providers model."""
    return preview(*inputs, token=oauth.token if oauth else None)


def run_in_session(request: gr.Request, oauth: gr.OAuthToken | None, *inputs):
    """``run`` with the session's request (Cancel looks the run up by the real session) and the signed-in
    user's token. Gradio fills both in only for positional parameters (a keyword-only request stayed
    None, so every run was "local" and Cancel found nothing)."""
    yield from run(*inputs, request=request, token=oauth.token if oauth else None)


def _run_status(progress: core.Progress, out_path: str) -> str:
    if progress.cancelled:
        return (f"Cancelled: {progress.kept} new conversation{'s' * (progress.kept != 1)} written to "
                f"`{Path(out_path).name}` ({progress.skipped} already there). Run again to resume.")
    if progress.finished:
        reasons = ", ".join(f"{r} ({n})" for r, n in progress.reasons.most_common(3))
        why = f" Most common reasons to drop: {reasons}." if reasons else ""
        return (f"Done: {progress.kept} new conversation{'s' * (progress.kept != 1)} ({progress.skipped} already there) "
                f"in `{Path(out_path).name}`.{why}")
    return "Generating... finished conversations are saved as they come."


def cancel(request: gr.Request = None):
    """Stop this session's run within a decode step or two (finished conversations stay saved; the
    unfinished ones are made again by the next run)."""
    with _running_lock:
        stop = _running.get(request.session_hash if request is not None else "local")
    if stop:
        stop.set()
        gr.Info("Cancelling: the run stops after the current step and says how many were written.")
        return gr.skip()  # the run writes the status ("Cancelled: N new conversations written ..."); a
        # "Cancelling..." written here could arrive after it and stay on screen
    return "Nothing is running."


def new_output():
    return None, "", "Next run writes a new file.", []


# --------------------------------------------------------------------------- outputs


def flat_json(out_path):
    """The output in the flat ``{"conv", "restyled_conv"}`` JSON of earlier persona experiments."""
    if not out_path or not Path(out_path).is_file():
        raise gr.Error("Run the generation first.")
    return str(core.write_flat_json(out_path, Path(out_path).with_suffix(".flat.json")))


def push(out_path, repo_id, private, token, config, oauth_token: gr.OAuthToken | None = None):
    """Push the output as a Hub dataset with a card recording the generation config. The token is
    used for this call only; the second value clears the token box."""
    if not out_path or not Path(out_path).is_file():
        raise gr.Error("Run the generation first: there is nothing to push.")
    try:
        url = core.push_to_hub(out_path, repo_id or "", token=hub.resolve_token(token, oauth_token),
                               config=config or {}, private=bool(private))
    except (hub.HubError, core.ConfigError) as exc:
        return f"**Error:** {exc}", ""
    return f"Pushed: [{url}]({url})", ""


def send_to_finetune(out_path, request: gr.Request = None):
    """Hand the output to the Fine-tune tab (its file box validates on change) and switch to it; not
    while this session's run is still writing it, and not before it holds a conversation."""
    with _running_lock:
        running = (request.session_hash if request is not None else "local") in _running
    if running:
        raise gr.Error("The run is still going: wait until it ends (or Cancel it), then send the output.")
    if not out_path or not Path(out_path).is_file() or not Path(out_path).stat().st_size:
        raise gr.Error("Run the generation first: there is nothing to send.")
    return gr.update(value=out_path), gr.Tabs(selected="finetune")


# --------------------------------------------------------------------------- layout


def render(shared: Shared) -> None:
    """Build the Synthetic tab inside the current Blocks context."""
    out_path = gr.State(None)
    config_state = gr.State({})
    defaults = FormValues()
    mode = gr.Radio([core.PERSONA, core.KEYWORD], value=defaults.mode, label="Mode", elem_id="synth-mode",
                    info="persona: seed messages role-played by user personas; keyword: one script per word")
    with gr.Column(visible=True) as persona_box:
        with gr.Row():
            seeds = gr.Textbox(defaults.seeds, lines=4, label="Seed messages (one per line)", elem_id="synth-seeds", scale=3)
            seed_file = gr.File(label="...or upload seeds (.txt one per line, .csv or .xlsx, .jsonl, .parquet or "
                                      ".arrow: also chat data, by its first message)", scale=2,
                                file_types=[".txt", ".csv", ".xlsx", ".jsonl", ".json", ".parquet", ".arrow"],
                                elem_id="synth-seed-file")
        personas = gr.Dataframe(value=DEFAULT_PERSONA_ROWS, headers=core.PERSONA_COLUMNS, column_count=4, type="array",
                                interactive=True, label="Personas (motivation x disposition; edit names and descriptions)",
                                elem_id="synth-personas", wrap=True)
        with gr.Accordion("Import a persona config or build a grid", open=False):
            persona_files = gr.File(label="Persona experiment config (.json) with its description files",
                                    file_count="multiple", elem_id="synth-persona-config")
            with gr.Row():
                motivations = gr.Dataframe(value=[["learn", "wants to understand a topic well"]],
                                           headers=["motivation", "description"], column_count=2, type="array",
                                           interactive=True, label="Motivations")
                dispositions = gr.Dataframe(value=[["curious", "asks many questions"]], headers=["disposition", "description"],
                                            column_count=2, type="array", interactive=True, label="Dispositions")
            grid_btn = gr.Button("Make grid", size="sm", elem_id="synth-make-grid")
        with gr.Row():
            strategy = gr.Radio(list(core.STRATEGIES), value=defaults.strategy, label="Strategy",
                                info="agents: two role-played agents take turns; script: one generation parsed into turns")
            turns = gr.Slider(1, 10, defaults.turns, step=1, label="Turns (exchanges) per conversation")
            samples = gr.Number(defaults.samples, precision=0, minimum=1, label="Conversations per seed and persona")
        template = gr.Textbox(defaults.template, lines=6, label="Generation template ({motivation}, {disposition}, {seed})",
                              elem_id="synth-template")
        assistant_prompt = gr.Textbox(defaults.assistant_prompt, lines=2, label="Assistant system prompt")
        with gr.Row():
            restyle = gr.Checkbox(defaults.restyle, label="Restyle pass", elem_id="synth-restyle")
            restyle_max_chars = gr.Number(defaults.restyle_max_chars, precision=0, minimum=0, label="Restyled message max characters (0 = no limit)")
        restyle_template = gr.Textbox(defaults.restyle_template, lines=3, label="Restyle template ({message})")
    with gr.Column(visible=False) as keyword_box:
        keyword_file = gr.File(label="Import keyword config (.json)", file_types=[".json"], elem_id="synth-keyword-config")
        kw_name = gr.Textbox(defaults.kw_name, label="Name")
        prompt_lines = gr.Textbox(defaults.prompt_lines, lines=4, label="Prompt lines ({word} is replaced)",
                                  elem_id="synth-prompt-lines")
        with gr.Row():
            words = gr.Textbox(defaults.words, lines=6, label="Words (one per line)", elem_id="synth-words")
            exclude = gr.Textbox(defaults.exclude, lines=6, label="Exclude (one per line; text or regex, any case)",
                                 elem_id="synth-exclude")
        with gr.Row():
            role_user = gr.Textbox(defaults.role_user, label="First speaker (user)")
            role_assistant = gr.Textbox(defaults.role_assistant, label="Second speaker (assistant)")
            n_per_word = gr.Number(defaults.n_per_word, precision=0, minimum=1, label="Conversations per word")
        with gr.Row():
            kw_strategy = gr.Radio(list(core.KEYWORD_STRATEGIES), value=defaults.kw_strategy, label="Strategy",
                                   info="turns: one line per step (best for small models); script: one generation parsed")
            kw_turns = gr.Slider(1, 10, defaults.kw_turns, step=1, label="Exchanges per conversation (turns strategy)")
    with gr.Accordion("Generation settings", open=False):
        with gr.Row():
            temperature = gr.Slider(0, 1.5, defaults.temperature, step=0.05, label="Temperature (0 = greedy)")
            max_new_tokens = gr.Number(defaults.max_new_tokens, precision=0, minimum=0, label="Max new tokens (0 = auto)")
            batch_size = gr.Number(defaults.batch_size, precision=0, minimum=1, maximum=512, label="Batch size",
                                   info="conversations made at once (default: the engine's batch)",
                                   elem_id="synth-batch-size")
            max_attempts = gr.Number(core.PersonaJob.max_attempts, precision=0, minimum=1, label="Attempts per item",
                                     elem_id="synth-max-attempts")
            seed = gr.Number(defaults.seed, precision=0, label="Seed (-1 = random)", elem_id="synth-random-seed")
    with gr.Row():
        preview_btn = gr.Button("Preview (first 3)", elem_id="synth-preview")
        run_btn = gr.Button("Run", variant="primary", elem_id="synth-run")
        cancel_btn = gr.Button("Cancel", elem_id="synth-cancel")  # not a red alarm while nothing runs
        new_btn = gr.Button("New output file", elem_id="synth-new-output")
    progress = gr.HTML(elem_id="synth-progress")
    status = gr.Markdown(elem_id="synth-status")
    preview_out = gr.Markdown(elem_id="synth-preview-output")
    # widths that keep "why dropped" in view: left to itself the conversation took the whole width
    table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, type="array", wrap=True, label="Conversations (newest first)",
                         column_widths=["5%", "6%", "14%", "9%", "48%", "18%"], elem_id="synth-output-table")
    command = gr.Code(label="The same run from the command line", language="shell", interactive=False,
                      elem_id="synth-command", elem_classes=[OUTPUT_BOX])
    with gr.Row():
        download = output_file("Output (chat JSONL)", "synth-download")
        flat = output_file("Flat JSON ({conv, restyled_conv})", "synth-flat")
    with gr.Row():
        flat_btn = gr.Button("Make flat JSON", size="sm", elem_id="synth-flat-json")
        send_btn = gr.Button("Send to Fine-tune", elem_id="synth-send-finetune",
                             visible=shared.finetune_file is not None)
    with gr.Accordion("Push to the Hugging Face Hub", open=False):
        with gr.Row():
            repo_id = gr.Textbox(label="Dataset repo id", placeholder="your-name/curious-conversations", elem_id="synth-repo-id")
            private = gr.Checkbox(True, label="Private")
            token = gr.Textbox(label="Token (used for this push only, never stored)", type="password",
                               elem_id="synth-token")
        push_btn = gr.Button("Push dataset", elem_id="synth-push")
        push_status = gr.Markdown(elem_id="synth-push-status")

    form = Form(mode, seeds, personas, strategy, turns, samples, template, assistant_prompt, restyle, restyle_template,
                restyle_max_chars, kw_name, prompt_lines, words, exclude, role_user, role_assistant, n_per_word,
                kw_strategy, kw_turns, max_attempts, temperature, max_new_tokens, batch_size, seed)
    bar = [shared.model, shared.adapter, shared.quantize]
    private_event = dict(api_visibility="private")
    mode.change(switch_mode, [mode, max_attempts], [persona_box, keyword_box, max_attempts, preview_out, progress,
                                                     status, table], queue=False, **private_event)
    strategy.change(switch_strategy, [strategy, template], [template, assistant_prompt], queue=False, **private_event)
    seed_file.upload(load_seed_file, [seed_file, seeds], [seeds, seed_file], **private_event)
    persona_files.upload(import_persona_config, [persona_files, template, restyle_template],
                         [personas, template, restyle_template, restyle, status], **private_event)
    keyword_file.upload(import_keyword_config, keyword_file, [kw_name, prompt_lines, words, exclude, status],
                        **private_event)
    grid_btn.click(make_grid, [motivations, dispositions], personas, **private_event)  # queued: its warnings show

    def preview_form(data: dict, oauth: gr.OAuthToken | None):
        return preview_for_user(oauth, *(data[c] for c in bar), form.values(data))

    def run_form(data: dict, request: gr.Request, oauth: gr.OAuthToken | None):
        yield from run_in_session(request, oauth, *(data[c] for c in bar), data[out_path], data[config_state],
                                  form.values(data))

    preview_btn.click(preview_form, {*bar, *form.inputs()}, [preview_out, table, progress, status],
                      api_name="synth_preview")
    run_btn.click(lambda: "", None, preview_out, queue=False, **private_event)  # a run's own conversations replace it
    run_event = run_btn.click(run_form, {*bar, out_path, config_state, *form.inputs()},
                              [progress, status, table, download, out_path, command, config_state], api_name="synth_run")
    cancel_btn.click(cancel, None, status, **private_event)
    new_btn.click(new_output, None, [out_path, progress, status, table], queue=False, **private_event)
    flat_btn.click(flat_json, out_path, flat, **private_event)
    push_btn.click(push, [out_path, repo_id, private, token, config_state], [push_status, token], api_name="synth_push")
    if shared.finetune_file is not None:
        send_btn.click(send_to_finetune, out_path, [shared.finetune_file, shared.tabs], **private_event)
    shared.extra["synth_run_event"] = run_event
