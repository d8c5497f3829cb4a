"""Sharing and exporting a chat: a read-only link to a snapshot (revoked by its secret or its
owner), the shared view's header, and the conversation as a JSON or Markdown download."""
from __future__ import annotations

import datetime
import os
import time

import gradio as gr

from ..store import conversation_to_json, conversation_to_markdown
from .replies import replying
from .common import adapter_label, export_folder, get_store, plain_messages, sampling_from, spec_from, username

NOT_AVAILABLE = "This conversation is not available"


def app_url(request: gr.Request | None) -> str:
    """The public address of this app, as the browser reached it (proxies included)."""
    if request is None:
        return "http://127.0.0.1:7860/"
    headers = request.headers
    host = headers.get("x-forwarded-host") or headers.get("host") or "127.0.0.1:7860"
    proto = headers.get("x-forwarded-proto") or request.request.url.scheme if getattr(request, "request", None) else "http"
    return f"{proto.split(',')[0].strip()}://{host.split(',')[0].strip()}/"


def client_address(request: gr.Request | None) -> str | None:
    """Who is asking, for rate limits: the client's address; on a Space, where every request comes
    through the platform's proxy, the first address of X-Forwarded-For (set by that proxy)."""
    if request is None:
        return None
    forwarded = request.headers.get("x-forwarded-for") if os.environ.get("SPACE_ID") else None
    if forwarded:
        return forwarded.split(",")[0].strip()
    return getattr(getattr(request, "client", None), "host", None)


def snapshot_of(history, model, adapter, system_prompt, temperature, top_p, top_k, max_new_tokens,
                repetition_penalty, seed) -> dict:
    """The conversation with what made it: the system prompt as its first message, the model, the
    adapter's spec (a name or a folder) and the sampling settings. Raises ValueError for a bad value."""
    messages = plain_messages(history)
    if messages and system_prompt and system_prompt.strip():
        messages = [{"role": "system", "content": system_prompt.strip()}] + messages
    sampling = sampling_from(temperature, top_p, top_k, max_new_tokens, repetition_penalty, seed)
    return {"messages": messages, "model": model, "adapter": spec_from(model, adapter).adapter,
            "settings": {"sampling": sampling.to_dict()}}


STILL_WRITING = "A reply is still being written: {what} the conversation once it ends (or press Stop)."
"""Said when Share or Export is pressed mid-reply: the chat then holds half a reply, which a link
would keep for good."""


def share(history, model, adapter, system_prompt, temperature, top_p, top_k, max_new_tokens,
          repetition_penalty, seed, expires_days, secrets, request: gr.Request,
          profile: gr.OAuthProfile | None = None):
    """Save a snapshot and return its link (and the revoke secret, shown once); nothing while this
    session's reply is being written."""
    if not plain_messages(history):
        raise gr.Error("Nothing to share yet: send a message first.")
    if replying(request):
        raise gr.Error(STILL_WRITING.format(what="share"))
    expires_in = float(expires_days) * 86400 if expires_days and float(expires_days) > 0 else None
    try:
        snapshot = snapshot_of(history, model, adapter, system_prompt, temperature, top_p, top_k, max_new_tokens,
                               repetition_penalty, seed)
        ticket = get_store().create_share(snapshot["messages"], model=model, adapter=snapshot["adapter"],
                                          settings=snapshot["settings"], owner=username(profile),
                                          expires_in=expires_in, creator=client_address(request))
    except ValueError as exc:  # a size or rate limit (LimitError), a full disk, or a malformed message
        raise gr.Error(f"Could not share: {exc}") from None
    secrets = dict(secrets or {})
    secrets[ticket.id] = ticket.secret
    link = f"{app_url(request)}?share={ticket.id}"
    note = (f"Anyone with this link can read the conversation. Revoke secret (shown once, keep it to revoke "
            f"from another browser): `{ticket.secret}`")
    return link, note, secrets


def revoke(link_or_id: str, typed_secret: str, secrets, profile: gr.OAuthProfile | None = None):
    share_id = (link_or_id or "").strip().rsplit("share=", 1)[-1].split("&")[0]
    secret = (typed_secret or "").strip() or (secrets or {}).get(share_id)
    if get_store().revoke_share(share_id, secret=secret, owner=username(profile)):
        return "Revoked: the link no longer shows the conversation."
    raise gr.Error("Could not revoke: unknown link, or not yours (give the revoke secret).")


def export(history, model, adapter, system_prompt, temperature, top_p, top_k, max_new_tokens, repetition_penalty,
           seed, fmt: str = "json", request: gr.Request = None):
    """Write the conversation as JSON or Markdown (``fmt``: "json" or "md"), with its system prompt, model,
    adapter (by name, never a server path), sampling settings and time, and return the file for download;
    nothing while this session's reply is being written."""
    if not plain_messages(history):
        raise gr.Error("Nothing to export yet.")
    if replying(request):
        raise gr.Error(STILL_WRITING.format(what="export"))
    try:
        snapshot = snapshot_of(history, model, adapter, system_prompt, temperature, top_p, top_k, max_new_tokens,
                               repetition_penalty, seed)
    except ValueError as exc:
        raise gr.Error(f"Could not export: {exc}") from None
    snapshot.update(adapter=adapter_label(snapshot["adapter"]), created=time.time())
    text = conversation_to_json(snapshot) if fmt == "json" else conversation_to_markdown(snapshot)
    folder = export_folder("conversation")
    path = folder / f"conversation.{'json' if fmt == 'json' else 'md'}"
    path.write_text(text, encoding="utf-8")
    return str(path)


def load_shared(share_id: str):
    """The snapshot behind a share link, or None (unknown, revoked or expired)."""
    return get_store().get_share(share_id) if share_id else None


def shared_header(snapshot) -> str:
    sampling = (snapshot.settings or {}).get("sampling", {})
    knobs = ", ".join(f"{k}={v}" for k, v in sampling.items() if v not in (None, [], ""))  # no "stop=[]"
    adapter = f" + adapter `{adapter_label(snapshot.adapter)}`" if snapshot.adapter else ""
    return (f"### Shared conversation\nModel: `{snapshot.model}`{adapter} · settings: {knobs or 'default'} · "
            f"shared {datetime.datetime.fromtimestamp(snapshot.created).strftime('%Y-%m-%d %H:%M')}"
            " · read-only")
