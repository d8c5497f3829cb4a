"""The Chat tab's "What convo remembers about you" panel and its switch: what convo keeps about a user
(convo.memory), keyed by the signed-in user, else by a random id the browser keeps; listed and deleted
here, and the switch as this browser left it."""
from __future__ import annotations

import html

import gradio as gr

from .. import memory
from ..store import new_id
from .common import get_store, username


def saved_switch(saved):
    """The memory switch as this browser last set it, or as it is (never set)."""
    return saved["on"] if isinstance(saved, dict) and isinstance(saved.get("on"), bool) else gr.skip()


def ensure_memory_id(browser_id):
    """This browser's memory id: the one it keeps, or a new random one on its first visit."""
    return browser_id if memory.owner_key(None, browser_id) else new_id()


def show_memory(memory_id, profile: gr.OAuthProfile | None = None):
    """The panel: the facts kept for this user as a list, and the same facts to pick one to forget."""
    owner = memory.owner_key(username(profile), memory_id)
    facts = get_store().memories(owner) if owner else []
    text = "\n".join(f"- {html.escape(m.fact)}" for m in facts) or "convo remembers nothing about you."
    return text, gr.update(choices=[(m.fact, m.id) for m in facts], value=None)


def forget_memory(choice, memory_id, profile: gr.OAuthProfile | None = None):
    """Delete the picked fact (its row is gone from the database)."""
    owner = memory.owner_key(username(profile), memory_id)
    if owner is None or choice in (None, ""):
        raise gr.Error("Pick a fact to forget first.")
    get_store().forget(owner, int(choice))
    return show_memory(memory_id, profile)


def fold_question():
    """The "Forget everything" confirmation row, folded (Keep, or a list counted again)."""
    return gr.update(visible=False)


def ask_forget_all(memory_id, profile: gr.OAuthProfile | None = None):
    """"Forget everything", first step: the confirmation row, saying how many facts go; nothing is deleted
    yet (one click used to delete them all, with no way back)."""
    owner = memory.owner_key(username(profile), memory_id)
    count = len(get_store().memories(owner)) if owner else 0
    if not count:
        gr.Info("convo remembers nothing about you: there is nothing to forget.")
        return fold_question(), ""
    facts = "the 1 fact" if count == 1 else f"all {count} facts"
    return gr.update(visible=True), f"Forget {facts} convo remembers about you? This cannot be undone."


def forget_all_memory(memory_id, profile: gr.OAuthProfile | None = None):
    """Delete every fact kept for this user (the confirmation's Yes); the row folds away."""
    owner = memory.owner_key(username(profile), memory_id)
    if owner is not None:
        get_store().forget(owner)
    return *show_memory(memory_id, profile), fold_question()
