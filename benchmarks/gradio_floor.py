"""Gradio alone: an app whose chat event has the app's shape and a handler that does no work.

    python benchmarks/gradio_floor.py   (serves on $GRADIO_SERVER_PORT; concurrency.py launches it)

concurrency.py runs its users against this app after convo's, so the worst time to first token of
8 users against 1 is printed beside what serving alone costs on the same machine: the same page
client, the same queue settings (``convo.ui.queue_size()`` concurrent handlers, 64 waiting), an event
chained after an unqueued one as the chat's send is, 13 inputs and 5 outputs without Gradio's pre-
and postprocessing, and updates no more often than the chat's (its own ``redraw_interval``,
shared by the replies streaming at once). The handler yields its reply's first word at once, then
a word every 4 ms (about convo's decode speed here) with no model, no store and no engine: whatever
its users wait for is Gradio's serving and the clients' own work on the cores they share.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gradio as gr  # noqa: E402

from convo.ui import queue_size  # noqa: E402
from convo.ui.chat import _counted_stream, redraw_interval  # noqa: E402  (the chat's own pacing of updates)

WORDS = ["Once", "upon", "a", "time", "there", "was", "a", "dragon"]
WORD_EVERY_S = 0.004


def reply(history, model, adapter, quantize, system_prompt, curious, interviewer, temperature, top_p, top_k,
          max_new_tokens, repetition_penalty, seed):
    """``max_new_tokens`` words of a fixed story, streamed as the chat streams a reply."""
    with _counted_stream():
        text = ""
        for text, shown in story(int(max_new_tokens or 64)):
            if shown:
                yield history + [{"role": "assistant", "content": text}], gr.skip(), gr.skip(), "Replying", gr.skip()
            time.sleep(WORD_EVERY_S)
        yield history + [{"role": "assistant", "content": text}], gr.skip(), gr.skip(), "", gr.skip()


def story(words: int):
    """The story's text after each of its ``words`` words (the caller waits WORD_EVERY_S between
    them) and whether the chat would show it then: the first word at once, then at most every
    ``redraw_interval()``, the chat's interval for the replies streaming now (``_counted_stream``)."""
    text, shown_at = "", 0.0
    for i in range(words):
        text += (" " if text else "") + WORDS[i % len(WORDS)]
        now = time.monotonic()
        shown = i == 0 or now - shown_at >= redraw_interval()
        if shown:
            shown_at = now
        yield text, shown


def build() -> gr.Blocks:
    with gr.Blocks() as demo:
        chatbot = gr.Chatbot()
        knobs = [gr.Textbox("bundled"), gr.Textbox("(none)"), gr.Textbox("auto"), gr.Textbox(), gr.Checkbox(),
                 gr.Checkbox(), gr.Number(), gr.Number(), gr.Number(), gr.Number(64), gr.Number(), gr.Number()]
        conversation_id, asked, status, chips = gr.State(), gr.State(), gr.Markdown(), gr.State()
        message = gr.Textbox()
        message.submit(lambda text, history: ("", history), [message, chatbot], [message, chatbot], queue=False).then(
            reply, [chatbot, *knobs], [chatbot, conversation_id, asked, status, chips], api_name="chat",
            preprocess=False, postprocess=False)
    return demo


if __name__ == "__main__":
    build().queue(default_concurrency_limit=queue_size(), max_size=64).launch(
        server_name="127.0.0.1", server_port=int(os.environ["GRADIO_SERVER_PORT"]))
