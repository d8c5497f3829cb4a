"""What the tabs share: the model bar above them and a few components other tabs may fill.

Tabs receive one ``Shared`` and read the model/adapter/quantize values as event inputs, so each
browser session chooses its own model while the pool keeps one copy of each in memory.
"""
from __future__ import annotations

import functools
import hmac
import inspect
import os
import re
import shutil
import tempfile
import threading
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from gradio.utils import is_prop_update

from ..engine.remote import is_remote, remote_choices
from ..settings import BUNDLED, QUANTIZE_CHOICES, ModelSpec, Sampling, default_model_name
from ..store import Store, data_dir

NO_ADAPTER = "(none)"
REFUSED = ("'{name}' is not a model this app may load: pick 'bundled', a Hugging Face Hub id (user/model), "
           "an adapter trained here, or a folder the operator listed in CONVO_MODEL_DIRS")
"""One message for every refused name, whether or not such a path exists (no file-system probing)."""
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")
EXPORT_MAX_AGE_S = 86400  # downloads are kept a day, like the uploads Gradio keeps (delete_cache)
OUTPUT_BOX = "output-box"
"""The class of the boxes the app fills for the user (files to download: ``output_file``; a command to
copy): the app's CSS keeps them a line high while they are empty."""


def output_file(label: str, elem_id: str, **kwargs) -> gr.File:
    """A box the app puts files in for the user to download (nothing is uploaded there)."""
    return gr.File(label=label, interactive=False, elem_id=elem_id, elem_classes=[OUTPUT_BOX], **kwargs)


@dataclass
class Shared:
    """Components shared between tabs (set while the app is being built)."""

    tabs: gr.Tabs
    model: gr.Dropdown
    adapter: gr.Dropdown
    quantize: gr.Radio
    model_status: gr.Markdown
    chat_input: gr.Textbox | None = None
    finetune_file: gr.File | None = None
    extra: dict = field(default_factory=dict)


def plain_messages(history) -> list[dict]:
    """Chatbot value -> ``[{"role", "content": str}]``. Gradio 6 hands content over as a list of
    parts (``{"type": "text", "text": ...}``); we keep the text and drop files/components."""
    messages = []
    for message in history or []:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        elif isinstance(content, dict):
            content = content.get("text", "")
        messages.append({"role": message.get("role"), "content": content if isinstance(content, str) else ""})
    return messages


def processed_here(fn, inputs: list, outputs: list):
    """``fn`` as a streaming event handler to register with ``preprocess=False, postprocess=False``: it
    runs each input component's ``preprocess`` and each output's ``postprocess`` itself, in the
    handler's thread, and hands Gradio values that are ready to send.

    Gradio runs every component's preprocess and postprocess in a worker thread of its own, hopped to
    from the server's event loop and back: the chat's 16 non-State inputs are 16 hops for each
    message, and every streamed update pays again for its outputs, an update ``gr.skip()`` building a
    new component. Measured on 2 cores (Zen 4, one user, nothing else running) that was 1.9 ms of
    preprocessing a message and 1.9 ms of postprocessing an update; with 8 users sending together,
    while the engine held both cores, the eight messages' preprocessing took 17-23 ms and each first
    update 5-8 ms, one after another on the event loop.

    Values are processed as Gradio does it: a component with a data model is validated against it
    first, State values pass as they are, and so do updates (``gr.update``/``gr.skip()``: Gradio
    applies those itself, and a ``value`` in one goes out unprocessed, so ``fn`` yields plain values).
    One difference: Gradio processes with the session's copy of a component an event has updated;
    this uses the component as built, which is the same for components whose processing does not
    read their updatable settings (a Dropdown that allows custom values, Sliders with fixed bounds).
    ``fn`` keeps its signature for Gradio (``functools.wraps``), so a ``gr.Request`` or OAuth
    parameter after the inputs is still filled in.

    A State output given the object it was last set to, or the object it came in as, goes to Gradio
    as ``gr.skip()``: Gradio rebuilds a State's whole config each time it sets one
    (``SessionState.__setitem__``), and a streamed reply repeats its conversation id, questions
    asked and hidden chips with every update. Skipping changes nothing Gradio keeps (the session
    holds that object already) nor its change events (Gradio compares the State's hash before and
    after each update, so an object changed in place is still seen). Measured with ``py-spy --gil``
    on the app under 8 users (benchmarks/concurrency.py, AMX Xeon): the three States' configs took
    10% of the server's time holding the GIL."""
    if not inspect.isgeneratorfunction(fn):
        raise TypeError(f"processed_here serves generator handlers; {fn.__name__} is not one")

    def pre(block, value):
        if block.stateful:
            return value
        model = getattr(block, "data_model", None)
        if model is not None and value is not None and not isinstance(value, model):
            value = model.model_validate(value, context={"validate_meta": True})
        return block.preprocess(value)

    def post(block, value):
        if block.stateful or is_prop_update(value):
            return value
        value = block.postprocess(value)
        return value.model_dump() if hasattr(value, "model_dump") else value

    states = [i for i, block in enumerate(outputs) if block.stateful]

    @functools.wraps(fn)
    def handler(*args):
        n = len(inputs)
        values = [pre(block, value) for block, value in zip(inputs, args[:n])]
        # the object each State output was last set to; a State that is also an input starts as the
        # object Gradio passed in, which is the one the session holds
        last = {i: args[j] for i in states for j, block in enumerate(inputs) if block is outputs[i]}
        for update in fn(*values, *args[n:]):
            if len(outputs) == 1:  # Gradio takes a one-output handler's value alone, not in a tuple
                yield post(outputs[0], update)
                continue
            update = list(update)
            for i in states:  # the same object again: Gradio's session already holds it
                if i in last and update[i] is last[i]:
                    update[i] = gr.skip()
                elif not is_prop_update(update[i]):
                    last[i] = update[i]
            yield tuple(post(block, value) for block, value in zip(outputs, update, strict=True))

    # Gradio reads the handler's signature on every call (``special_args``); computed once here,
    # not from ``fn``'s through ``__wrapped__`` each time (3% of the server's GIL time, 8 users)
    handler.__signature__ = inspect.signature(fn)
    try:
        handler.__annotations__ = typing.get_type_hints(fn)  # and its type hints, evaluated once (2%)
    except (NameError, TypeError):  # a hint that names nothing importable: Gradio evaluates it as before
        pass
    return handler


def spec_from(model: str | None, adapter: str | None, quantize: str | None = "auto") -> ModelSpec:
    """The ModelSpec a tab should use, from the model bar's values; a name that is not allowed
    (see :func:`check_source`) raises ``ValueError`` with the one ``REFUSED`` message."""
    adapter = None if not adapter or adapter == NO_ADAPTER else adapter.strip() or None
    adapter = trained_adapter_path(adapter) or adapter
    name = check_source((model or default_model()).strip())
    return ModelSpec(name=name, adapter=check_source(adapter, adapter=True) if adapter else None,
                     quantize=quantize or "auto")


def allowed_dirs(adapter: bool = False) -> list[Path]:
    """Folders a visitor may load from: the operator's ``CONVO_MODEL_DIRS`` (``os.pathsep``-separated),
    plus, for adapters, the folder this app trains adapters into."""
    dirs = [Path(p).expanduser() for p in os.environ.get("CONVO_MODEL_DIRS", "").split(os.pathsep) if p.strip()]
    if adapter:
        dirs.append(adapters_dir())
    return [d.resolve() for d in dirs]


def check_source(name: str, adapter: bool = False) -> str:
    """``name`` when a visitor may load it: ``bundled``, the operator's default model, a remote name, a Hub id that is
    not also a local path, or a folder inside :func:`allowed_dirs`. Anything else (``/etc``,
    ``../x``, ``/nonexistent``) raises ``ValueError`` with the same message, so the answer says
    nothing about the server's files."""
    if not adapter and (name in (BUNDLED, default_model()) or is_remote(name)):
        return name  # remote names reach only declared endpoints or Inference Providers (convo.engine.remote)
    looks_like_hub_id = bool(_HUB_ID.fullmatch(name)) and ".." not in name
    if looks_like_hub_id and not os.path.lexists(name):
        return name
    try:
        path = Path(name).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        path = None
    if path is not None and any(path == d or path.is_relative_to(d) for d in allowed_dirs(adapter)):
        return str(path)
    raise ValueError(REFUSED.format(name=name[:200]))


def operators() -> set[str]:
    """Hub usernames the operator listed in ``CONVO_OPERATORS`` (separated by commas or spaces)."""
    return {name for name in re.split(r"[\s,]+", os.environ.get("CONVO_OPERATORS", "")) if name}


def operator_key_matches(key: str | None) -> bool:
    """Is ``key`` the operator key (``CONVO_OPERATOR_KEY``)? Never true when no key is set."""
    expected = os.environ.get("CONVO_OPERATOR_KEY", "")
    return bool(expected and key) and hmac.compare_digest(key.encode(), expected.encode())


def is_operator(unlocked: bool, profile=None) -> bool:
    """The operator: a signed-in Hub user listed in ``CONVO_OPERATORS``, or a page that was unlocked
    with ``CONVO_OPERATOR_KEY`` (``unlocked`` lives in a server-side ``gr.State``). Neither set:
    nobody, so a local run without OAuth has no operator until its owner sets a key."""
    name = getattr(profile, "username", None)
    return bool(unlocked) or bool(name and name in operators())


default_model = default_model_name  # one definition: convo.settings


def adapters_dir() -> Path:
    """Where the Fine-tune tab saves adapters; Chat and Questions list them."""
    return data_dir() / "adapters"


def local_adapters() -> list[str]:
    """Adapter folders saved by the Fine-tune tab (newest first), as selectable paths."""
    root = adapters_dir()
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / "adapter_config.json").is_file()]
    return [str(p) for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def trained_adapter_path(name: str | None) -> str | None:
    """The folder of the adapter trained here under ``name`` (as the Adapter menu shows it), or None."""
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        return None
    folder = adapters_dir() / name
    return str(folder) if (folder / "adapter_config.json").is_file() else None


def adapter_label(adapter: str | None) -> str | None:
    """An adapter as visitors see it: a trained one by its name (its server path stays on the server)."""
    if adapter and Path(adapter).parent == adapters_dir() and trained_adapter_path(Path(adapter).name):
        return Path(adapter).name
    return adapter


def adapter_choices() -> list[str]:
    """The Adapter menu: the adapters trained here, by name."""
    return [NO_ADAPTER] + [Path(path).name for path in local_adapters()]


def model_bar() -> tuple[gr.Dropdown, gr.Dropdown, gr.Radio, gr.Button, gr.Markdown]:
    """The model picker every tab uses: base model, optional adapter, quantization."""
    with gr.Row(equal_height=True):
        choices = list(dict.fromkeys([default_model(), *remote_choices()]))  # + the operator's declared servers
        model = gr.Dropdown(choices=choices, value=default_model(), allow_custom_value=True,
                            label="Model", info="'bundled', a Hub id (e.g. Qwen/Qwen2.5-0.5B-Instruct), a local folder, "
                                                "or a declared server (remote:...)",
                            scale=3, elem_id="model-name")
        adapter = gr.Dropdown(choices=adapter_choices(), value=NO_ADAPTER, allow_custom_value=True,
                              label="Adapter", info="LoRA adapter: a trained one, a folder or a Hub id",
                              scale=3, elem_id="adapter-name")
        quantize = gr.Radio(list(QUANTIZE_CHOICES), value=ModelSpec.quantize, label="Quantization",
                            info="auto = 4-bit NF4 on a GPU", scale=2)
        load = gr.Button("Load", scale=1, elem_id="load-model")
    status = gr.Markdown(elem_id="model-status")
    return model, adapter, quantize, load, status


def export_folder(kind: str) -> Path:
    """A fresh folder for files a person downloads (conversation exports, question lists), under
    ``<tmp>/convo-exports``; folders older than ``EXPORT_MAX_AGE_S`` are removed on the way, so a
    long-running app does not fill its disk."""
    root = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / "convo-exports"
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - EXPORT_MAX_AGE_S
    for old in root.iterdir():
        try:
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:  # removed by another request meanwhile
            pass
    return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=root))


_store: list[Store] = []
_store_lock = threading.Lock()


def get_store() -> Store:
    """One store per process (SQLite in the data directory), opened by the first caller. Under a lock:
    ``lru_cache`` let 8 first chats at once each open one, and their switches to WAL failed with
    "database is locked" (a CI run of the 100-chat memory test)."""
    with _store_lock:
        if not _store:
            _store.append(Store())
        return _store[0]


def username(profile) -> str | None:
    """The signed-in Hub user's name (a gr.OAuthProfile, or its dict), else None."""
    return getattr(profile, "username", None) or (profile.get("preferred_username") if isinstance(profile, dict) else None)


def sampling_from(temperature, top_p, top_k, max_new_tokens, repetition_penalty, seed) -> Sampling:
    return Sampling(temperature=float(temperature), top_p=float(top_p), top_k=int(top_k),
                    max_new_tokens=int(max_new_tokens), repetition_penalty=float(repetition_penalty),
                    seed=int(seed) if seed not in (None, "") and int(seed) >= 0 else None)
