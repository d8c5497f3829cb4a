"""The Chat tab: streaming multi-turn chat with curious follow-up questions (share links and exports:
ui/sharing.py).

Each browser session keeps its own conversation in the Chatbot value and gr.State; the only
process-wide objects are the model pool, the store, and the Stop flags of running replies.
Per-user memory (convo.memory) is keyed by the signed-in user, else by a random id the browser
keeps in gr.BrowserState; the "What convo remembers about you" panel lists and deletes it.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import gradio as gr

from .. import chat as core
from .. import memory
from ..engine.generation import Stop
from ..engine import ModelLoadError, get_model
from ..engine.remote import RemoteError, for_user
from ..sentiment import DEFAULT_WEIGHT as SENTIMENT_WEIGHT
from ..settings import ChatSettings, model_generation_config, recommended_sampling
from .common import (NO_ADAPTER, Shared, adapter_label, default_model, get_store, output_file, plain_messages,
                     processed_here, sampling_from, spec_from, username)
from .memory_panel import ask_forget_all, fold_question, forget_all_memory, forget_memory, saved_switch, show_memory
from .replies import Turns, _session, _sessions, _sessions_lock
from .sharing import export, revoke, share

N_SUGGESTIONS = 3
UPDATE_EVERY_S = 0.05  # one streaming reply is redrawn at most 20 times a second
REPLYING = "Replying..."
THINKING = "Thinking of follow-up questions..."
STOPPED = "Reply stopped."
LEFT = ("The last reply was cut off before it ended (the page was closed or reloaded while it was written, or the "
        "server stopped). Regenerate writes it again.")
CUT = {"length": "Reply cut at the token limit (Max new tokens, in Settings).",
       "loop": "Reply ended where it began repeating itself."}
"""The status line under a reply that did not end on its own (``chat.reply_stream``'s ``on_cut``)."""
SUGGESTIONS_LABEL = "convo could ask you next (click to let it ask):"


_streaming = 0  # replies streaming now, over every session (guarded by _sessions_lock)
_last_sent: dict[str, tuple[str, float, int]] = {}
"""Each session's last message, when, and how many messages the chat showed before it (guarded by _sessions_lock)."""
RESEND_S = 1.0
"""A message sent again within this many seconds, with no reply shown in between, is the same click
twice (a double-click's second click comes 0.1-0.5 s after the first)."""


def redraw_interval() -> float:
    """Seconds between redraws of a streaming reply: the 20 redraws a second are shared by the
    replies streaming at once. Each redraw costs the server (and a client on the same cores) about
    a decode step, so 8 users redrawing 20 times a second each took the cores from decoding:
    measured with benchmarks/concurrency.py on 2 cores (Zen 4, eager decode step), 8 users streamed
    56.9 tokens/s in all with 20 redraws a second each, and 95.6-118.1 with the 20 shared."""
    return UPDATE_EVERY_S * max(1, _streaming)


@contextmanager
def _counted_stream():
    global _streaming
    with _sessions_lock:
        _streaming += 1
    try:
        yield
    finally:
        with _sessions_lock:
            _streaming -= 1


def chips_value(questions: list[str], note: str = "") -> dict:
    """The suggestion chips' gr.State: the questions offered (none: the chips are hidden) and the
    text of their score parts. Handlers set this State and its change event draws the chips, so a
    streamed update carries no component updates: Gradio builds a new component and its config for
    each one, ``gr.skip()`` included, and the chips' four with the status line's were most of an
    update's cost."""
    return {"questions": list(questions[:N_SUGGESTIONS]), "note": note}


def show_chips(value: dict | None) -> list:
    """The chips' State -> updates for their label, the buttons and the score note."""
    value = value or chips_value([])
    questions, note = value["questions"], value["note"]
    padded = questions + [""] * (N_SUGGESTIONS - len(questions))
    return [gr.update(visible=bool(questions)), *[gr.update(value=q, visible=bool(q)) for q in padded],
            gr.update(value=note, visible=bool(note))]


def _no_chips() -> list:
    """The chips' State emptied, and the chips hidden, for the events that change the chat without a
    reply (a click on a chip, Undo, Clear): written here, not left to the State's change event, which
    the page runs after queued events only (Clear runs outside the queue)."""
    return [chips_value([]), *show_chips(None)]


def score_note(follow_ups: list, feeling: bool) -> str:
    """The score parts of the suggestions, one per line: shown when feeling is weighed or a
    suggestion comes from memory."""
    if not follow_ups or not (feeling or any("memory" in f.parts for f in follow_ups)):
        return ""
    lines = []
    for i, f in enumerate(follow_ups[:N_SUGGESTIONS], start=1):
        if "memory" in f.parts:
            lines.append(f"{i}. remembered from an earlier conversation")
        elif "sentiment" in f.parts:
            lines.append(f"{i}. score {f.score:.3f} = log-prob {f.parts['lm_logprob']:.3f} "
                         f"+ {SENTIMENT_WEIGHT} x sentiment {f.parts['sentiment']:.3f}")
        else:
            lines.append(f"{i}. score {f.score:.3f} (log-prob)")
    return "Suggestion scores:  \n" + "  \n".join(lines)


def _status(state: str, queued: int) -> str:
    more = f" ({queued} more message{'s' * (queued != 1)} queued, answered in order)" if queued else ""
    return f"{state}{more}" if state else ""


def _without_shown_pending(history: list[dict], pending: list[str]) -> list[dict]:
    """The conversation without the queued messages the browser already shows at its end (they
    are taken from the queue, one turn at a time)."""
    for j in range(min(len(pending), len(history)), 0, -1):
        tail = history[-j:]
        if all(m["role"] == "user" for m in tail) and [m["content"] for m in tail] == pending[:j]:
            return history[:-j]
    return history


def respond(history, model, adapter, quantize, system_prompt, curious, interviewer,
            temperature, top_p, top_k, max_new_tokens, repetition_penalty, seed, conversation_id, asked,
            feeling: bool = False, remember: bool = False, memory_id: str | None = None,
            request: gr.Request = None, profile: gr.OAuthProfile | None = None, oauth: gr.OAuthToken | None = None):
    """Answer the last user message and every message queued while answering, in order: stream
    each reply, then think of follow-up questions (shown only when no newer message waits).
    ``feeling`` weighs the suggestions' sentiment; ``remember`` keeps the facts of each message for
    this user and offers questions built from earlier ones.

    One loop runs per session: a call made while one runs changes nothing (the running loop takes
    the queued message), so a message sent mid-reply is neither dropped nor answered out of turn.

    Yields (conversation, conversation id, questions asked, status line, chips' State) as plain
    values; the app serves it through ``processed_here``, which readies them for Gradio.
    """
    nothing = [gr.skip()] * 5
    with _sessions_lock:
        turns = _sessions.setdefault(_session(request), Turns())
        history = _without_shown_pending(plain_messages(history), turns.pending)
        unanswered = bool(turns.pending) or bool(history) and history[-1]["role"] == "user"
        idle = turns.busy or not unanswered
        if not idle:
            turns.busy = True
        elif not turns.busy:  # nothing to answer: no loop, so no session state to keep
            del _sessions[_session(request)]
    if idle:  # a loop runs (it takes the queued message), or nothing to answer: an empty Send changes nothing
        # (a handler that yields nothing empties the chat, and the next message was saved over the conversation)
        yield tuple(nothing)
        return
    try:
        lm = for_user(get_model(spec_from(model, adapter, quantize)), oauth.token if oauth else None)
        sampling = sampling_from(temperature, top_p, top_k, max_new_tokens, repetition_penalty, seed)
        settings = ChatSettings(system_prompt=system_prompt or "", curious=curious, interviewer=interviewer)
    except (ModelLoadError, ValueError) as exc:
        gr.Warning(str(exc))
        with _sessions_lock:
            turns.pending.clear()
            turns.busy = False
        if history and history[-1]["role"] == "user":
            history = history[:-1]
        yield history, conversation_id, asked, "", chips_value([])
        return
    owner = memory.owner_key(username(profile), memory_id) if remember else None
    try:
        from ..engine.fastpath import arriving  # (torch: the app has loaded it, see preload_default_model)

        # the engine hears of this reply now: eight messages sent together start in one step
        with arriving(lm):
            while True:
                if turns.cleared:  # cleared mid-turn: show the empty chat (Gradio repeats the last update at the end)
                    turns.cleared, history, conversation_id, asked = False, [], None, []
                    yield [], None, [], "", chips_value([])
                with _sessions_lock:
                    if turns.pending:
                        history = history + [{"role": "user", "content": turns.pending.pop(0)}]
                    elif not history or history[-1]["role"] != "user":
                        turns.busy = False
                        break
                    turns.stop = stop = Stop()
                history, conversation_id, asked = yield from _unless_cleared(turns, _one_turn(
                    lm, history, settings, sampling, stop, turns, conversation_id, asked, profile, curious,
                    feeling=feeling, owner=owner))
    except RemoteError as exc:  # the server went away: one line, the user's message stays to retry
        gr.Warning(str(exc))
        yield _shown(history, turns), conversation_id, asked, "", chips_value([])
        return
    finally:
        with _sessions_lock:
            turns.busy = False
            turns.stop = None
            if not turns.pending and _sessions.get(_session(request)) is turns:
                del _sessions[_session(request)]


@contextmanager
def _writing(turns: Turns):
    """``turns.writing`` while a reply streams (Share and Export wait for it)."""
    turns.writing = True
    try:
        yield
    finally:
        turns.writing = False


def _shown(history: list[dict], turns: Turns) -> list[dict]:
    """What the chat shows: the conversation so far, then the messages still queued."""
    return history + [{"role": "user", "content": text} for text in list(turns.pending)]


def _unless_cleared(turns: Turns, turn):
    """A turn's updates until Clear runs mid-turn (the cleared conversation is never shown again);
    the turn still runs to its end (its reply is saved) and what it returns is returned."""
    try:
        while True:
            try:
                update = next(turn)
            except StopIteration as end:
                return end.value
            if not turns.cleared:
                yield update
    finally:
        turn.close()


def _one_turn(lm, history, settings, sampling, stop, turns, conversation_id, asked, profile, curious,
              feeling=False, owner=None):
    """Stream one reply, save the conversation, then the follow-up suggestions (skipped when a
    newer message is already queued, so they never land on a newer turn). With a memory ``owner``,
    the user's message is remembered and questions built from earlier facts are offered. The
    updates hide the last reply's suggestions until the new ones come (an unchanged State costs
    nothing, and its change event redraws the chips only when it changes)."""
    remembered = memory.follow_ups(get_store(), owner, history) if owner else []
    if owner:
        memory.remember(get_store(), owner, history[-1]["content"])
    hidden = chips_value([])
    reply = ""
    # The user's message is saved now and the reply while it streams: a crash loses seconds, not the turn.
    saver = core.TurnSaver(get_store(), history, conversation_id, owner=username(profile), model=lm.spec.name,
                           adapter=lm.spec.adapter,
                           settings={"sampling": sampling.to_dict(), "system_prompt": settings.system_prompt})
    conversation_id = saver.start()
    cut: list[str] = []
    written = False
    try:
        with _counted_stream(), _writing(turns):
            for reply in core.reply_stream(lm, history, settings, sampling, stop, asked=asked,
                                           min_interval=redraw_interval, remembered=remembered, on_cut=cut.append):
                saver.partial(reply)
                shown = _shown(history + [{"role": "assistant", "content": reply}], turns)
                yield shown, conversation_id, asked, _status(REPLYING, len(turns.pending)), hidden
        written = True
    finally:
        if not written:  # the page stopped reading (closed or reloaded): keep what was written, marked cut off
            saver.partial(reply, now=True)
    history = history + [{"role": "assistant", "content": reply}]
    asked = list(asked or []) + core.asked_questions(history[-1:])
    conversation_id = saver.finish(reply)
    if saver.problem:
        gr.Warning(saver.take_problem())
    follow = []
    if curious and not stop.is_set() and reply.strip() and not turns.pending:
        yield _shown(history, turns), conversation_id, asked, _status(THINKING, 0), hidden
        try:
            follow = core.follow_up_questions(lm, history, n=N_SUGGESTIONS, asked=asked, remembered=remembered,
                                              sentiment_weight=SENTIMENT_WEIGHT if feeling else 0.0)
        except RemoteError as exc:
            gr.Warning(str(exc))
    if turns.pending:  # a newer message waits: its turn comes next, these suggestions are stale
        follow = []
    # a reply stopped or cut says so (a stopped one ends where Stop cut it, with no suggestions)
    ending = STOPPED if stop.is_set() else CUT[cut[0]] if cut else ""
    yield _shown(history, turns), conversation_id, asked, _status(ending, 0), chips_value(
        [q.text for q in follow], score_note(follow, feeling))
    return history, conversation_id, asked


def add_user_message(message: str, history, request: gr.Request = None):
    """Show the typed message and queue it for the reply loop; the textbox is cleared. The same text
    sent again by the same session within ``RESEND_S``, with no reply shown since, is a double-click
    (both clicks read the box before it was cleared) and is dropped; sent again after its reply, it is
    a new message (a quick "yes" to a second question, or a benchmark's repeated runs)."""
    text = (message or "").strip()
    if not text:
        return "", gr.skip()
    history = plain_messages(history)
    now = time.monotonic()
    with _sessions_lock:
        for key in [k for k, (_, at, _) in _last_sent.items() if now - at > RESEND_S]:
            del _last_sent[key]
        last, _, before = _last_sent.get(_session(request), ("", 0.0, -1))
        # the second click read the chat the first one did (or that and the message it sent): no reply
        # came between them, so the same text again is not a new message
        if last == text and (len(history) == before or len(history) == before + 1
                             and history[-1] == {"role": "user", "content": text}):
            return "", gr.skip()
        _last_sent[_session(request)] = (text, now, len(history))
        _sessions.setdefault(_session(request), Turns()).pending.append(text)
    return "", history + [{"role": "user", "content": text}]


def ask_suggestion(question: str, history, asked, conversation_id=None, request: gr.Request = None,
                   profile: gr.OAuthProfile | None = None):
    """The assistant asks the chosen follow-up question (it is convo's question, not the user's):
    it ends the last reply, or starts a new assistant message; the saved conversation gets it too.
    Not while the reply loop runs (as Undo: the loop's next update would undo it on the page)."""
    if _busy(request):
        gr.Info(NOT_OVER.format(what="pick a question"))
        return (gr.skip(),) * (2 + len(_no_chips()))
    history = plain_messages(history)
    question = (question or "").strip()
    if not question:
        return history, asked, *_no_chips()
    if history and history[-1]["role"] == "assistant":
        history[-1] = {"role": "assistant", "content": f"{history[-1]['content'].rstrip()}\n\n{question}"}
    else:
        history.append({"role": "assistant", "content": question})
    resave(conversation_id, history, profile)
    return history, list(asked or []) + [question], *_no_chips()


def resave(conversation_id, history: list[dict], profile: gr.OAuthProfile | None = None) -> None:
    """Write the chat as it now shows over its saved conversation (after a suggestion chip or Undo,
    which change it without a reply: a reload brought back what they had changed). A conversation
    not saved yet or not this user's is left as it is."""
    saved = own_conversation(conversation_id, profile)
    if saved is None:
        return
    system = [m for m in saved.messages[:1] if m["role"] == "system"]
    try:
        # (the chat as shown: a reply cut off before is undone or followed by a question, no longer cut off)
        settings = {k: v for k, v in (saved.settings or {}).items() if k != core.WRITING}
        get_store().save_conversation(system + history, conversation_id=saved.id, owner=saved.owner,
                                      model=saved.model, adapter=saved.adapter, settings=settings)
    except (ValueError, PermissionError) as exc:  # a size limit or a full disk: the chat goes on unsaved
        gr.Warning(f"This conversation is no longer saved: {exc}")


def stop_reply(request: gr.Request):
    with _sessions_lock:
        turns = _sessions.get(_session(request))
        stop = turns.stop if turns else None
    if stop:
        stop.set()


NOT_OVER = "The reply is not over yet: {what} once it ends (or press Stop)."


def _busy(request) -> bool:
    """Whether this session's reply loop runs (a reply, its follow-up questions, or messages queued)."""
    with _sessions_lock:
        turns = _sessions.get(_session(request))
        return turns is not None and turns.busy


def undo(history, conversation_id=None, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
    """Drop the last exchange (the last user message and the reply after it), saved too; not while the
    reply loop runs (its next update brought the exchange back on the page, while the undone
    conversation was saved: a reload and a share link showed another chat than the page)."""
    if _busy(request):
        gr.Info(NOT_OVER.format(what="undo"))
        return (gr.skip(),) * (1 + len(_no_chips()))
    history = plain_messages(history)
    while history and history[-1]["role"] == "assistant":
        history.pop()
    if history and history[-1]["role"] == "user":
        history.pop()
    resave(conversation_id, history, profile)
    return history, *_no_chips()


def prepare_regenerate(history, request: gr.Request = None):
    """Remove the last reply so it can be generated again (not while a reply is being written)."""
    history = plain_messages(history)
    if _busy(request):
        return history
    while history and history[-1]["role"] == "assistant":
        history.pop()
    return history


def clear(request: gr.Request = None):
    """Start over: an empty chat, a new conversation id, no questions asked, share link or suggestions.
    A running reply stops and shows nothing more (its updates brought the cleared conversation back)."""
    with _sessions_lock:
        turns = _sessions.get(_session(request))
        if turns is not None and turns.busy:
            turns.pending.clear()
            turns.cleared = True
            if turns.stop is not None:
                turns.stop.set()
    return [], None, [], "", *_no_chips()


def cleared(request: gr.Request = None):
    """The rest of Clear, after the chat box's own trash icon emptied it (the page does that itself)."""
    return clear(request)[1:]


def own_conversation(conversation_id, profile: gr.OAuthProfile | None = None):
    """The saved conversation with this id when this user may open it (an anonymous one, or a
    signed-in user's own), else None."""
    conversation = get_store().load_conversation(conversation_id) if isinstance(conversation_id, str) else None
    if conversation is None or (conversation.owner is not None and conversation.owner != username(profile)):
        return None
    return conversation


def reopen(saved: dict | None, profile: gr.OAuthProfile | None = None):
    """On page load: the conversation this browser had open (``{"id": ...}``, kept in the browser),
    with the model and adapter it was held with, so a reload loses nothing. A signed-in user's
    conversation reopens only for that user. ``(chat, conversation id, questions asked, model, adapter,
    status line)``: the status says when the last reply was cut off (the page was left while it was written)."""
    conversation = own_conversation(saved.get("id") if isinstance(saved, dict) else None, profile)
    if conversation is None:
        return (gr.skip(),) * (6 + len(REOPENED_SETTINGS))
    messages = [m for m in conversation.messages if m["role"] != "system"]
    return (messages, conversation.id, core.asked_questions(messages), conversation.model,
            adapter_label(conversation.adapter) or NO_ADAPTER, *reopened_settings(conversation.settings),
            LEFT if core.cut_off(conversation.settings) else "")


REOPENED_SETTINGS = ("system_prompt", "temperature", "top_p", "top_k", "max_new_tokens", "repetition_penalty", "seed")
"""The Settings a reopened conversation was held with, in the order of the Settings' controls."""


def reopened_settings(settings: dict | None) -> list:
    """The Settings' values a conversation was saved with (each one it has; the others stay as they are).
    A reload reset them to the defaults while the conversation reopened: its next reply, its export and
    its share link then named settings it was never held with.

    >>> reopened_settings({"system_prompt": "Be brief.", "sampling": {"temperature": 0.0, "seed": None}})[:3]
    ['Be brief.', 0.0, {'__type__': 'update'}]
    """
    settings = settings if isinstance(settings, dict) else {}
    sampling = settings.get("sampling") if isinstance(settings.get("sampling"), dict) else {}
    values = {"system_prompt": settings.get("system_prompt"), **{k: sampling.get(k) for k in REOPENED_SETTINGS[1:]}}
    if "seed" in sampling and sampling["seed"] is None:
        values["seed"] = -1  # (random)
    return [gr.skip() if values[name] is None else values[name] for name in REOPENED_SETTINGS]


def render(shared: Shared) -> None:
    """Build the Chat tab inside the current Blocks context."""
    conversation_id = gr.State(None)
    asked = gr.State([])
    secrets = gr.State({})
    chatbot = gr.Chatbot(label="Conversation", elem_id="chatbot", height=460, buttons=["copy", "copy_all"])
    chat_status = gr.Markdown(elem_id="chat-status")
    suggestions_label = gr.Markdown(SUGGESTIONS_LABEL, visible=False, elem_id="suggestions-label")
    with gr.Row(elem_id="suggestions"):
        suggestions = [gr.Button(visible=False, size="sm", elem_id=f"suggestion-{i}", elem_classes=["suggestion"])
                       for i in range(N_SUGGESTIONS)]
    suggestion_scores = gr.Markdown(visible=False, elem_id="suggestion-scores")
    chips = gr.State(chips_value([]))  # the suggestions offered; its change event draws them
    with gr.Row():
        message = gr.Textbox(placeholder="Say something...", show_label=False, scale=6, elem_id="chat-input",
                             lines=1, max_lines=6, submit_btn=False)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
        stop = gr.Button("Stop", variant="secondary", scale=1, elem_id="stop")
    with gr.Row():
        regenerate = gr.Button("Regenerate", size="sm", elem_id="regenerate")
        undo_btn = gr.Button("Undo", size="sm", elem_id="undo")
        clear_btn = gr.Button("Clear", size="sm", elem_id="clear")
    with gr.Accordion("Settings", open=False):
        system_prompt = gr.Textbox(ChatSettings().system_prompt, label="System prompt", lines=2, elem_id="system-prompt")
        with gr.Row():
            curious = gr.Checkbox(ChatSettings.curious, label="Curious mode (suggest follow-up questions)", elem_id="curious")
            interviewer = gr.Checkbox(ChatSettings.interviewer, label="Interviewer (end each reply with a question)", elem_id="interviewer")
        defaults, source = recommended_sampling(default_model(), model_generation_config(default_model()))
        gr.Markdown(f"Defaults for `{default_model()}` ({source}): temperature {defaults.temperature}, top-p "
                    f"{defaults.top_p}, top-k {defaults.top_k}, repetition penalty {defaults.repetition_penalty}.",
                    elem_id="sampling-defaults")
        with gr.Row():
            feeling = gr.Checkbox(False, label="Weigh feeling in follow-ups (sentiment strength)", elem_id="chat-sentiment")
            remember = gr.Checkbox(memory.enabled_by_default(), elem_id="memory-on",
                                   label="Remember what I tell about myself (only for me; see the panel below)")
        with gr.Row():
            temperature = gr.Slider(0, 2, defaults.temperature, step=0.05, label="Temperature (0 = greedy)",
                                    elem_id="temperature")
            top_p = gr.Slider(0.05, 1, defaults.top_p, step=0.05, label="Top-p")
            top_k = gr.Slider(0, 200, defaults.top_k, step=1, label="Top-k (0 = off)")
        with gr.Row():
            max_new_tokens = gr.Slider(1, 1024, defaults.max_new_tokens, step=1, label="Max new tokens",  # (step 16 from 1 missed 256)
                                       elem_id="max-new-tokens")
            repetition_penalty = gr.Slider(1.0, 2.0, defaults.repetition_penalty, step=0.05, label="Repetition penalty")
            seed = gr.Number(-1, precision=0, label="Seed (-1 = random)")
    memory_id = gr.BrowserState("", storage_key="convo-memory-id")
    remember_saved = gr.BrowserState({}, storage_key="convo-remember")  # {"on": bool} once the switch is used
    saved_id = gr.BrowserState({}, storage_key="convo-conversation")  # {"id": ...}: what a reload reopens
    with gr.Accordion("What convo remembers about you", open=False, elem_id="memory-panel") as memory_panel:
        memory_list = gr.Markdown(elem_id="memory-list")
        with gr.Row():
            memory_choice = gr.Dropdown([], label="Fact", elem_id="memory-choice", scale=3)
            forget_one = gr.Button("Forget this", size="sm", elem_id="memory-forget")
            forget_all = gr.Button("Forget everything", size="sm", variant="stop", elem_id="memory-forget-all")
            refresh_memory = gr.Button("Refresh", size="sm", elem_id="memory-refresh")
        with gr.Row(visible=False, elem_id="memory-confirm") as forget_confirm:
            forget_question = gr.Markdown(elem_id="memory-confirm-text")
            forget_yes = gr.Button("Yes, forget", size="sm", variant="stop", elem_id="memory-forget-all-yes")
            forget_keep = gr.Button("Keep", size="sm", elem_id="memory-forget-all-keep")
    with gr.Accordion("Share and export", open=False):
        with gr.Row():
            expires_days = gr.Number(0, precision=0, label="Link expires after (days, 0 = never)", minimum=0)
            share_btn = gr.Button("Share", elem_id="share")
        share_link = gr.Textbox(label="Share link", elem_id="share-link", buttons=["copy"], interactive=False)
        share_note = gr.Markdown(elem_id="share-note")
        with gr.Row():
            revoke_secret = gr.Textbox(label="Revoke secret (not needed in the browser that shared)", type="password")
            revoke_btn = gr.Button("Revoke link", elem_id="revoke")
        revoke_status = gr.Markdown(elem_id="revoke-status")
        with gr.Row():
            export_json = gr.Button("Export JSON", size="sm", elem_id="export-json")
            export_md = gr.Button("Export Markdown", size="sm", elem_id="export-md")
        export_file = output_file("Export", "export-file")

    shared.chat_input = message
    shared.extra["chatbot"] = chatbot
    shared.extra["chat_reset"] = (conversation_id, asked)
    shared.extra["system_prompt"] = system_prompt
    shared.extra["memory_id"] = memory_id
    bar = [shared.model, shared.adapter, shared.quantize]
    knobs = [system_prompt, curious, interviewer, temperature, top_p, top_k, max_new_tokens, repetition_penalty, seed]
    reply_inputs = [chatbot, *bar, *knobs, conversation_id, asked, feeling, remember, memory_id]
    reply_outputs = [chatbot, conversation_id, asked, chat_status, chips]
    reply = processed_here(respond, reply_inputs, reply_outputs)
    chip_views = [suggestions_label, *suggestions, suggestion_scores]

    # A message sent while a reply runs is queued by add_user_message and answered by the running
    # loop; "multiple" lets every send reach respond (the default "once" dropped it while busy).
    events = []
    for trigger in (message.submit, send.click):
        events.append(trigger(add_user_message, [message, chatbot], [message, chatbot], queue=False,
                              api_visibility="private", trigger_mode="multiple")
                      .then(reply, reply_inputs, reply_outputs, api_name="chat" if not events else False,
                            trigger_mode="multiple", preprocess=False, postprocess=False))
    for button in suggestions:
        button.click(ask_suggestion, [button, chatbot, asked, conversation_id], [chatbot, asked, chips, *chip_views],
                     api_visibility="private")  # queued, as Undo: its "no longer saved" reaches the page
    events.append(regenerate.click(prepare_regenerate, chatbot, chatbot, queue=False, api_visibility="private")
                  .then(reply, reply_inputs, reply_outputs, api_visibility="private", preprocess=False,
                        postprocess=False))
    stop.click(stop_reply, None, None, queue=False, api_visibility="private")
    # queued: a message from an unqueued event (Undo's "not yet") never reached the page
    undo_btn.click(undo, [chatbot, conversation_id], [chatbot, chips, *chip_views], api_visibility="private")
    clear_btn.click(clear, None, [chatbot, conversation_id, asked, share_link, chips, *chip_views], queue=False,
                    api_visibility="private")
    chatbot.clear(cleared, None, [conversation_id, asked, share_link, chips, *chip_views], queue=False,
                  api_visibility="private")
    chips.change(show_chips, chips, chip_views, queue=False, api_visibility="private")
    # In a dict: the page writes only a truthy value to the browser's storage. Clear sets it itself: the
    # page runs a State's change event from a queued event's status messages (changed_state_ids), and
    # Clear is not queued, so the id's change did not follow it and a reload reopened the cleared chat.
    conversation_id.change(lambda new: {"id": new}, conversation_id, saved_id, queue=False, api_visibility="private")
    for trigger in (clear_btn.click, chatbot.clear):
        trigger(lambda: {"id": None}, None, saved_id, queue=False, api_visibility="private")
    setting_views = [system_prompt, temperature, top_p, top_k, max_new_tokens, repetition_penalty, seed]  # REOPENED_SETTINGS
    shared.extra.setdefault("on_load", []).append(
        (reopen, [saved_id], [chatbot, conversation_id, asked, shared.model, shared.adapter, *setting_views,
                              chat_status]))
    # the memory switch as this browser left it (a reload turned "off" back on, and facts were kept again)
    remember.input(lambda on: {"on": bool(on)}, remember, remember_saved, queue=False, api_visibility="private")
    shared.extra["on_load"].append((saved_switch, [remember_saved], [remember]))
    for trigger in (memory_panel.expand, refresh_memory.click):
        trigger(show_memory, memory_id, [memory_list, memory_choice], api_visibility="private").then(
            fold_question, None, forget_confirm, api_visibility="private")  # it counted other facts
    forget_one.click(forget_memory, [memory_choice, memory_id], [memory_list, memory_choice], api_visibility="private").then(
        fold_question, None, forget_confirm, api_visibility="private")
    forget_all.click(ask_forget_all, memory_id, [forget_confirm, forget_question], api_visibility="private")
    forget_yes.click(forget_all_memory, memory_id, [memory_list, memory_choice, forget_confirm], api_visibility="private")
    forget_keep.click(fold_question, None, forget_confirm, api_visibility="private")
    snapshot = [chatbot, shared.model, shared.adapter, system_prompt, temperature, top_p, top_k, max_new_tokens,
                repetition_penalty, seed]  # the conversation and what made it, as shared and exported
    share_btn.click(share, [*snapshot, expires_days, secrets], [share_link, share_note, secrets], api_name="share")
    revoke_btn.click(revoke, [share_link, revoke_secret, secrets], revoke_status, api_name="revoke")
    # the format as an input (a partial's type hints are not read: Gradio would not pass it the request)
    export_json.click(export, [*snapshot, gr.State("json")], export_file, api_visibility="private")
    export_md.click(export, [*snapshot, gr.State("md")], export_file, api_visibility="private")
