"""The Gradio app: a model bar above four tabs, plus the read-only view behind share links.

``build_app()`` returns the Blocks; ``launch_kwargs()`` the safe launch settings (local or Space).
Neither imports torch or transformers: all model work happens in convo's core modules.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import threading

import gradio as gr

from ..chat import asked_questions
from ..data import MAX_BYTES, MB
from ..engine import ModelLoadError, get_model
from ..threads import limit_kernel_caches, limit_malloc_arenas
from . import chat, common, finetune, memory_panel, questions, sharing, synth
from .common import OUTPUT_BOX, Shared, spec_from
from .job_view import NO_LOSS

TITLE = "convo: curious conversational models"
MAX_UPLOAD = f"{MAX_BYTES // MB}mb"  # Gradio's cap on any upload: the data validator's, in its MB
START_NEW = "Start a new conversation"
TABLE_MIN_WIDTHS = {"questions-table": 880, "questions-dropped": 600, "synth-output-table": 800, "ft-samples": 560}
"""Pixels below which a table scrolls sideways rather than squeeze its columns."""
CSS = (".suggestion { white-space: normal !important; text-align: left; }"
       # table cells break between words, never inside one ("rec/ords"); a wide table scrolls instead
       # (and their inner elements, in every table: a dataframe's header spans, which Gradio sets to
       # break-word, broke "why / dropped" and "messages" letter by letter when a column was squeezed)
       " table th, table td, table th *, table td *, [role=gridcell], [role=gridcell] *"
       " { word-break: normal !important; overflow-wrap: normal !important; hyphens: none; }"
       # a dataframe's columns are percentages of its width: on a phone those of a wide table were a
       # few pixels each ("0.76" and "model" stood one character a line). Below these widths the
       # table keeps them and scrolls sideways (the virtual table sizes its cells from its own width)
       + "".join(f" #{table} .virtual-table-viewport {{ min-width: {width}px; }}"
                 f" #{table} .upload-container {{ overflow-x: auto; }}" for table, width in TABLE_MIN_WIDTHS.items()) +
       # a conversation's turns each start a line (the cell ran them together: "...challenges. User: That's")
       " #synth-output-table [role=gridcell] span, #synth-output-table td span { white-space: pre-line; }"
       " .prose table { display: block; overflow-x: auto; }"
       # a hash or a path in code may wrap anywhere (it has no spaces), rather than run past its box
       " #ft-report code { word-break: break-all; }"
       # the loss plot before a job's first loss: no empty axes (folded, not gone: see job_view.NO_LOSS)
       f" #ft-loss-plot.{NO_LOSS} {{ height: 0 !important; min-height: 0 !important; padding: 0 !important;"
       " border: 0 !important; margin: 0 !important; overflow: hidden; visibility: hidden; }"
       # a training setting an error names: the message beside the field, in red
       " .ft-invalid .info-text"
       " { color: var(--color-red-600, #dc2626) !important; }"
       # a box the app fills (files to download, a command) is a line high while empty (Gradio's empty
       # file box is a 264-pixel area with a file icon, which looked like a place to drop a file)
       f" .{OUTPUT_BOX} .empty {{ min-height: 0 !important; height: var(--size-8, 2rem) !important; }}"
       # the shared view is read-only: no trash icon on its chat box (Gradio shows one on every chatbot)
       " #share-chatbot button[aria-label='Clear'], #share-chatbot button[title='Clear'] { display: none !important; }")


def on_space() -> bool:
    """True when running as a Hugging Face Space (the platform sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def load_model(model, adapter, quantize, last_good):
    """Load the chosen model into the shared pool; on failure keep the one we had."""
    try:
        spec = spec_from(model, adapter, quantize)
        lm = get_model(spec)
    except (ModelLoadError, ValueError) as exc:
        gr.Warning(str(exc))
        name, adapter_was, quant_was = last_good
        return name, adapter_was, quant_was, f"**Error:** {exc}  \nStill using `{name}`.", last_good
    if getattr(lm, "remote", False):  # nothing loads here: the server answers each request
        return model, adapter, quantize, f"Using `{spec.label}` (a remote server).", (model, adapter, quantize)
    quant = f", {lm.quantized}" if lm.quantized else ""
    label = spec.name + (f" + {common.adapter_label(spec.adapter)}" if spec.adapter else "")
    status = f"Loaded `{label}` on {lm.device} ({str(lm.model.dtype).replace('torch.', '')}{quant})."
    return model, adapter, quantize, status, (model, adapter, quantize)


def open_share(request: gr.Request):
    """On page load: a ``?share=<id>`` URL shows that conversation read-only, and nothing else."""
    share_id = (request.query_params.get("share") if request else None) or ""
    if not share_id:
        return gr.update(visible=False), gr.update(visible=True), "", [], gr.update(visible=False), None
    snapshot = sharing.load_shared(share_id)
    if snapshot is None:  # the Continue button becomes the way back to the app
        return (gr.update(visible=True), gr.update(visible=False), f"## {sharing.NOT_AVAILABLE}",
                gr.update(value=[], visible=False), gr.update(visible=True, value=START_NEW), None)
    messages = [m for m in snapshot.messages if m["role"] != "system"]
    return (gr.update(visible=True), gr.update(visible=False), sharing.shared_header(snapshot),
            gr.update(value=messages, visible=True), gr.update(visible=True), share_id)


def continue_share(share_id, profile: gr.OAuthProfile | None = None):
    """Copy the shared conversation into a conversation of this visitor's own, saved at once so a
    reload reopens it (the original stays as it is); for a link that is not available (revoked,
    expired, unknown): open the app with a new chat."""
    snapshot = sharing.load_shared(share_id)
    if snapshot is None:
        return (gr.update(visible=False), gr.update(visible=True), [], None, [], gr.update(), gr.update(),
                gr.update())
    messages = [m for m in snapshot.messages if m["role"] != "system"]
    system = next((m["content"] for m in snapshot.messages if m["role"] == "system"), None)
    try:
        copy = common.get_store().save_conversation(snapshot.messages, owner=common.username(profile),
                                                    model=snapshot.model, adapter=snapshot.adapter,
                                                    settings=snapshot.settings)
    except ValueError:  # the disk nearly full: continue unsaved, as a new chat would (its first reply says so)
        copy = None
    return (gr.update(visible=False), gr.update(visible=True), messages, copy, asked_questions(messages),
            snapshot.model, common.adapter_label(snapshot.adapter) or common.NO_ADAPTER,
            gr.update(value=system) if system else gr.update())


TAB_IDS = ("chat", "questions", "finetune", "synth")
TAB_IN_URL = """() => { setTimeout(() => {
    const id = document.querySelector('#tabs [role=tab][aria-selected=true]')?.dataset.tabId;
    const url = new URL(location.href);
    if (!id || id === 'chat') url.searchParams.delete('tab'); else url.searchParams.set('tab', id);
    history.replaceState(history.state, '', url);
}, 0); }"""
"""The open tab in the page's address (``?tab=finetune``), so a reload or a copied link opens it;
read after the page has drawn the switch, which a click or a handler (Ask in chat) may have made."""
LEAVE_SHARE = """(share_id) => { const url = new URL(location.href); url.searchParams.delete('share');
    history.replaceState(history.state, '', url); return share_id; }"""
"""Continue leaves the shared view for good: a reload opens the visitor's own chat, not the link's read-only view."""


def open_tab(request: gr.Request = None):
    """On page load: the tab the address names (``?tab=questions``), else the chat."""
    tab = (request.query_params.get("tab") or "").lower() if request else ""
    return gr.Tabs(selected=tab) if tab in TAB_IDS else gr.skip()


def signed_in(profile: gr.OAuthProfile | None):
    if profile is None:
        return "Not signed in." if on_space() else "Hub actions use `HF_TOKEN` or a token you paste."
    return f"Signed in as **{profile.username}**."


def build_app() -> gr.Blocks:
    """The whole app as one Blocks."""
    # delete_cache: uploads and generated files older than a day are removed every hour.
    with gr.Blocks(title=TITLE, delete_cache=(3600, 86400)) as demo:
        with gr.Row(equal_height=True):
            with gr.Column(scale=1, min_width=320):  # on a phone the sign-in line goes below, not beside
                gr.Markdown(f"# {TITLE}\nChat with a model that asks good questions, generate questions, "
                            "fine-tune adapters and make training conversations.", elem_id="title")
            with gr.Column(scale=0, min_width=220):
                if on_space():
                    gr.LoginButton()
                who = gr.Markdown(elem_id="signed-in")
        with gr.Column(visible=False, elem_id="share-view") as share_view:
            share_header = gr.Markdown(elem_id="share-header")
            share_chat = gr.Chatbot(label="Shared conversation", elem_id="share-chatbot", height=420)
            continue_btn = gr.Button("Continue this conversation", variant="primary", elem_id="continue")
            share_id = gr.State(None)
        with gr.Column(elem_id="main-view") as main_view:
            model, adapter, quantize, load, status = common.model_bar()
            last_good = gr.State((model.value, adapter.value, quantize.value))
            with gr.Tabs(elem_id="tabs") as tabs:
                shared = Shared(tabs=tabs, model=model, adapter=adapter, quantize=quantize, model_status=status)
                with gr.Tab("Chat", id=TAB_IDS[0]):
                    chat.render(shared)
                with gr.Tab("Questions", id=TAB_IDS[1]):
                    questions.render(shared)
                with gr.Tab("Fine-tune", id=TAB_IDS[2]) as finetune_tab:
                    finetune.render(shared)
                with gr.Tab("Synthetic", id=TAB_IDS[3]):
                    synth.render(shared)
        load.click(load_model, [model, adapter, quantize, last_good], [model, adapter, quantize, status, last_good],
                   api_name="load_model")
        adapter.focus(lambda: gr.update(choices=common.adapter_choices()), None, adapter, queue=False,
                      api_visibility="private")
        demo.load(open_share, None, [share_view, main_view, share_header, share_chat, continue_btn, share_id],
                  api_visibility="private")
        demo.load(signed_in, None, who, api_visibility="private")
        demo.load(open_tab, None, tabs, api_visibility="private", show_progress="hidden")
        tabs.change(None, None, None, js=TAB_IN_URL, api_visibility="private")
        for fn, inputs, outputs in shared.extra.get("on_load", []):  # tabs' own page-load handlers
            demo.load(fn, inputs, outputs, api_visibility="private", show_progress="hidden")
        fn, inputs, outputs = shared.extra["on_finetune_select"]
        finetune_tab.select(fn, inputs, outputs, api_visibility="private", show_progress="hidden")
        demo.load(memory_panel.ensure_memory_id, shared.extra["memory_id"], shared.extra["memory_id"], api_visibility="private")
        conversation_id, asked = shared.extra["chat_reset"]
        continue_btn.click(continue_share, share_id,
                           [share_view, main_view, shared.extra["chatbot"], conversation_id, asked, model, adapter,
                            shared.extra["system_prompt"]], js=LEAVE_SHARE, api_visibility="private")
    return demo


def queue_size() -> int:
    """Concurrent handlers: 8 chat users stream at once locally; 4 on a 2-vCPU free Space."""
    return int(os.environ.get("CONVO_CONCURRENCY") or (4 if on_space() else 8))


def max_sessions() -> int:
    """Visitor sessions whose state Gradio keeps in memory. Each keeps a copy of every component's
    config (about 0.4 MB for this app) until evicted, least recently used first, and Gradio's own
    default is 10,000 sessions: memory grew with every visitor (0.5 MB a chat from a new session)."""
    return int(os.environ.get("CONVO_MAX_SESSIONS") or 500)


def launch_kwargs() -> dict:
    """Launch settings: bind to all interfaces only on a Space; cap uploads; no extra file paths."""
    return dict(
        server_name="0.0.0.0" if on_space() else os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=MAX_UPLOAD,
        strict_cors=True,
        show_error=False,
        css=CSS,
        footer_links=["gradio", "settings"],
        # Gradio's run history keeps every event's inputs in the browser (localStorage) and shows
        # them at /gradio_api/runs: a token typed into a Push box would stay there in plain text.
        run_history=False,
        state_session_capacity=max_sessions(),
    )


def preload_default_model() -> threading.Thread:
    """Load (and on first run convert) the default model in the background while the server starts,
    and build its fast CPU engine, so the first chat does not wait for either."""
    def work():
        try:
            from ..engine.fastpath import engine_for

            lm = get_model(spec_from(common.default_model(), None))
            if not getattr(lm, "remote", False):  # a remote server needs nothing here
                engine_for(lm)
        except ModelLoadError as exc:
            print(f"convo: {exc}", flush=True)

    thread = threading.Thread(target=work, name="convo-preload", daemon=True)
    thread.start()
    return thread


def settle_missing_matplotlib() -> None:
    """Where matplotlib is not installed, record it as absent (``sys.modules["matplotlib"] = None``),
    so that ``import matplotlib`` fails at once, as Python documents for a None entry.

    Gradio runs every event's function inside ``MatplotlibBackendMananger``, which tries to import
    matplotlib on entering and again on leaving. A failed import is not remembered, so each attempt
    searched every folder on ``sys.path`` again: measured with ``py-spy --gil`` on the app under 8
    chat users (benchmarks/concurrency.py, AMX Xeon), 11% of the server's time holding the GIL, on
    the event loop that every user's update waits for. Installed, it imports once and stays."""
    if "matplotlib" not in sys.modules and importlib.util.find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None  # type: ignore[assignment]


def main() -> None:
    """Start the app (``python app.py`` / ``convo app``)."""
    limit_malloc_arenas()  # before the request threads exist: memory stays flat under chat load
    limit_kernel_caches()  # before torch's first matmul
    settle_missing_matplotlib()
    preload_default_model()  # loads torch and the model while Gradio builds the page
    demo = build_app()
    demo.queue(default_concurrency_limit=queue_size(), max_size=64)
    demo.launch(**launch_kwargs())
