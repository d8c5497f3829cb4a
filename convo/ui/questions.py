"""Questions tab: paste or upload a passage, get ranked questions, see the sentence each came from.

``render(shared)`` is called by ``convo.ui.build_app()`` inside the "Questions" tab. The handlers
below are plain functions (tested directly in tests/test_questions.py); the tab only wires them.
"""
from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import gradio as gr

from ..engine import ModelLoadError, get_model
from ..engine.remote import RemoteError, for_user
from ..questions import (DEFAULT_N, MAX_DOCUMENT_BYTES, MAX_PASSAGE_BYTES, PASSAGE_FORMATS, PASSAGE_SUFFIXES, STYLES,
                         QuestionError, QuestionSettings, check_size, passage_kind, question_run, read_passage)
from ..sentiment import DEFAULT_WEIGHT as SENTIMENT_WEIGHT
from .common import Shared, export_folder, output_file, spec_from

MODE_LABELS = {"Open questions": "open", "Answer-aware": "answer", "Conversational (next question)": "conversational"}
COLUMNS = ["#", "Question", "Score", "LM", "Grounding", "Diversity", "Sentiment", "Made by", "Sentence"]
COLUMNS_NO_SENTIMENT = [f"{c} (off)" if c == "Sentiment" else c for c in COLUMNS]
"""The headers of a run that did not weigh feeling: its blank Sentiment column says why it is blank."""
DROPPED_COLUMNS = ["Candidate", "Why dropped", "Made by", "Sentence"]
TABLE_LABEL = "Questions: the model's, by score, then any made by a rule to fill in (click one to see its source)"
"""Says why a rule's question can follow a model's of lower score (a walkthrough took it for a ranking fault)."""
CONTEXT_CHARS = 1200
"""Characters shown either side of the highlighted sentence (a 2 MB passage is not sent whole)."""
SELECT_FIRST = "Select a question in the table first."

ELEM_IDS = {
    "passage": "questions-passage", "file": "questions-file", "n": "questions-n", "mode": "questions-mode",
    "answer": "questions-answer", "history": "questions-history", "generate": "questions-generate",
    "status": "questions-status", "table": "questions-table", "source": "questions-source",
    "selected": "questions-selected", "ask_chat": "questions-ask-chat", "download": "questions-download",
    "dropped": "questions-dropped", "forget": "questions-forget", "sentiment": "questions-sentiment",
}
"""Stable element ids for browser tests."""


# --------------------------------------------------------------------------- handlers (plain functions)


READ_AS = {"md": " (its Markdown formatting left out)",
           "html": " (the page's text, without its menus, scripts and reference marks)",
           "pdf": " (the PDF's text, its lines joined into paragraphs, without page numbers and running headers)",
           "docx": " (the Word document's text)"}
"""What the status says was read from a file that is not plain text."""


def read_upload(path: str | None) -> tuple[str | None, str]:
    """An uploaded file -> ``(passage text or None, status message)``; one clear message per bad file."""
    if not path:
        return None, ""
    file = Path(path)
    try:
        check_size(file.stat().st_size, file.name)
        data = file.read_bytes()
        text = read_passage(data, file.name)
    except QuestionError as exc:
        return None, str(exc)
    return text, f"Loaded {file.name}: {len(text.split()):,} words{READ_AS.get(passage_kind(file.name, data), '')}."


def on_upload(path: str | None):
    """Gradio handler: fill the passage box, or leave it and say what is wrong with the file."""
    text, message = read_upload(path)
    return (gr.update() if text is None else text), message


def parse_history(text: str | None) -> list[dict]:
    """``Q: ...`` / ``A: ...`` lines -> ``[{"question", "answer"}]``; a bare line is a question.

    >>> parse_history("Q: Who?\\nA: Bees\\nWhere do they live?")
    [{'question': 'Who?', 'answer': 'Bees'}, {'question': 'Where do they live?', 'answer': None}]
    """
    turns: list[dict] = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        label, _, rest = line.partition(":")
        if label.strip().upper() == "A" and rest:
            if not turns or turns[-1]["answer"] is not None:
                raise QuestionError(f"Conversation so far, line {number}: an answer needs a question before it.")
            turns[-1]["answer"] = rest.strip()
        else:
            question = rest.strip() if label.strip().upper() == "Q" and rest else line
            turns.append({"question": question, "answer": None})
    return turns


def on_generate(passage: str, n: float, mode_label: str, answer: str, history_text: str, open_only: bool,
                style: str, model: str, adapter: str, quantize: str, seen: list[str] | None,
                answer_start: int | None = None, sentiment: bool = False, shown: list[dict] | None = None,
                oauth: gr.OAuthToken | None = None) -> tuple:
    """Generate questions (``sentiment``: weigh each question's feeling into its score). Returns ``(table rows, status, seen, questions, passage used, download files,
    dropped rows, source view html, selected question)``; on bad input only the status changes. ``shown``:
    the questions the table shows now (the last run's). A run with no questions offers no downloads (a
    header-only CSV and "[]" were offered). An Inference Providers model is billed to the signed-in
    user's ``oauth`` token."""
    seen = list(seen or [])
    mode = MODE_LABELS.get(mode_label, "open")
    try:
        check_size(len((passage or "").encode("utf-8")), "The passage", what="its text")  # pasted: no file
        history = parse_history(history_text) if mode == "conversational" else None
        if mode == "answer" and not (answer or "").strip():
            raise QuestionError("Answer-aware mode needs an answer: select a span of the passage or type it.")
        spec = spec_from(model, adapter, quantize)  # loaded after the input checks, unless a token goes with it
        run = question_run(passage or "", int(n or 0), for_user(get_model(spec), oauth.token) if oauth else spec,
                           answer=answer if mode == "answer" else None, history=history,
                           settings=QuestionSettings(open_only=bool(open_only), style=style or "auto",
                                                     sentiment_weight=SENTIMENT_WEIGHT if sentiment else 0.0),
                           seen=seen, answer_start=answer_start if mode == "answer" else None)
    except (QuestionError, ModelLoadError, ValueError, RemoteError) as exc:
        # the last run's questions stay (nothing is lost), said to be that run's
        earlier = " The questions below are from the previous run." if shown else ""  # (not if it had none)
        return (gr.update(),) + (f"{exc}{earlier}",) + (gr.update(),) * 7
    questions = [q.to_dict() for q in run.questions]
    shown_before = bool(seen)
    seen += [q["text"] for q in questions]
    first = questions[0] if questions else None
    table = gr.update(value=table_rows(questions, passage), headers=COLUMNS if sentiment else COLUMNS_NO_SENTIMENT)
    return (table, run_status(run, shown_before, asked=int(n or 0)), seen, questions, passage,
            write_downloads(questions, passage) if questions else None, dropped_rows([q.to_dict() for q in run.dropped], passage),
            source_html(passage, first["span"] if first else None), first["text"] if first else "")


def run_status(run, shown_before: bool = True, asked: int = 0) -> str:
    """One line saying what came out, and from where. ``shown_before``: this session has shown questions
    (a run drops their near-duplicates, so forgetting them may help); ``asked``: how many were asked
    for (fewer came with nothing said of the rest).

    >>> from types import SimpleNamespace as Run
    >>> run_status(Run(questions=[1, 2, 3], dropped=[4, 5, 6], model_kept=3, chunks_used=[0], chunks=1, generated=9,
    ...                mode="open", style="fewshot", seconds=1.23), asked=5)
    "3 of the 5 questions asked (3 candidates dropped: see 'Dropped candidates') from 1 of 1 chunk, 9 model samples (open, fewshot prompts), in 1.2 s."
    """
    got = len(run.questions)
    rules = got - run.model_kept
    if not got:
        return ("No new questions: every candidate was dropped (see 'Dropped candidates'). " +
                ("Try again, or 'Forget shown questions'." if shown_before
                 else "Try again (each run samples anew), or another passage or model."))
    parts = f"{got} question{'s' if got != 1 else ''}" + (f" ({rules} rule-based)" if rules else "")
    if 0 < got < asked:
        dropped = len(getattr(run, "dropped", []))
        why = (f"{dropped} candidate{'s' * (dropped != 1)} dropped: see 'Dropped candidates'" if dropped
               else "the passage gave no more")
        parts = f"{got} of the {asked} questions asked" + (f" ({rules} rule-based)" if rules else "") + f" ({why})"
    chunks = f"{len(run.chunks_used)} of {run.chunks} chunk{'s' if run.chunks != 1 else ''}"
    return (f"{parts} from {chunks}, {run.generated} model samples ({run.mode}, {run.style} prompts), "
            f"in {run.seconds:.1f} s.")


def _sentence(passage: str, span) -> str:
    text = " ".join(passage[span[0]:span[1]].split())
    return text if len(text) <= 160 else text[:157] + "..."


def table_rows(questions: list[dict], passage: str) -> list[list]:
    """Rows for the questions table (score parts rounded for reading)."""
    rows = []
    for i, q in enumerate(questions, start=1):
        parts = q["parts"]
        rows.append([i, q["text"], round(q["score"], 3), _round(parts.get("lm")), _round(parts.get("grounding")),
                     _round(parts.get("diversity")), _round(parts.get("sentiment")), q["source"],
                     _sentence(passage, q["span"])])
    return rows


def dropped_rows(dropped: list[dict], passage: str) -> list[list]:
    return [[q["text"], "; ".join(q["reasons"]), q["source"], _sentence(passage, q["span"])] for q in dropped]


def _round(value):
    return None if value is None else round(value, 3)


def source_html(passage: str | None, span) -> str:
    """The passage around ``span`` with the source sentence in a ``<mark>`` (escaped HTML)."""
    if not passage:
        return ""
    if not span:
        return f"<div class='questions-source'>{html.escape(passage[:2 * CONTEXT_CHARS])}</div>"
    start, end = span
    left, right = max(0, start - CONTEXT_CHARS), min(len(passage), end + CONTEXT_CHARS)
    body = (("... " if left else "") + html.escape(passage[left:start]) + "<mark>" + html.escape(passage[start:end])
            + "</mark>" + html.escape(passage[end:right]) + (" ..." if right < len(passage) else ""))
    return f"<div class='questions-source' style='white-space: pre-wrap'>{body}</div>"


def select_question(questions: list[dict] | None, passage: str | None, row: int) -> tuple[str, str]:
    """Clicking row ``row`` of the table: ``(source view html, question text)``."""
    if not questions or not 0 <= row < len(questions):
        return gr.update(), gr.update()
    q = questions[row]
    return source_html(passage, q["span"]), q["text"]


def on_select(questions: list[dict] | None, passage: str | None, evt: gr.SelectData):
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return select_question(questions, passage, int(row))


def ask_in_chat(question: str | None, questions: list[dict] | None = None, passage: str | None = None) -> tuple:
    """Put the selected question into the Chat tab's input, after the sentence it was asked about
    (quoted: alone, the question reached a chat that had never seen the passage), and switch to
    Chat: ``(chat input, tabs, status)``.

    >>> ask_in_chat("Who ran?", [{"text": "Who ran?", "span": [0, 9]}], "Ann ran. Bo sat.")[0]
    '"Ann ran."\\n\\nWho ran?'
    """
    question = (question or "").strip()
    if not question:
        return gr.update(), gr.update(), SELECT_FIRST
    span = next((q["span"] for q in questions or [] if q["text"] == question), None)
    sentence = " ".join(passage[span[0]:span[1]].split()) if span and passage else ""
    return (f'"{sentence}"\n\n{question}' if sentence else question), gr.Tabs(selected="chat"), ""


def write_downloads(questions: list[dict], passage: str) -> list[str]:
    """questions.csv and questions.json in a fresh temporary folder (Gradio serves them)."""
    folder = export_folder("questions")
    records = [{"rank": i, "text": q["text"], "score": q["score"], **{f"{k}": v for k, v in q["parts"].items()},
                "source": q["source"], "span_start": q["span"][0], "span_end": q["span"][1],
                "sentence": passage[q["span"][0]:q["span"][1]]} for i, q in enumerate(questions, start=1)]
    (folder / "questions.json").write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    with open(folder / "questions.csv", "w", newline="", encoding="utf-8") as handle:
        fields = list(records[0]) if records else ["rank", "text", "score", "source", "span_start", "span_end", "sentence"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    return [str(folder / "questions.csv"), str(folder / "questions.json")]


def on_passage_select(evt: gr.SelectData):
    """Selecting text in the passage makes it the answer (answer-aware mode), remembering where it starts."""
    start = evt.index[0] if isinstance(evt.index, (list, tuple)) else None
    return evt.value or "", start


def show_mode_inputs(mode_label: str):
    mode = MODE_LABELS.get(mode_label, "open")
    return gr.update(visible=mode == "answer"), gr.update(visible=mode == "conversational")


def forget_shown() -> tuple[list, str]:
    return [], "Forgot the questions shown in this session; they may be asked again."


# --------------------------------------------------------------------------- layout


def render(shared: Shared) -> None:
    """Build the Questions tab (call inside ``with gr.Tab("Questions", id="questions")``)."""
    seen = gr.State([])
    questions = gr.State([])
    passage_used = gr.State("")
    answer_start = gr.State(None)
    with gr.Row():
        with gr.Column(scale=3):
            passage = gr.Textbox(label="Passage", lines=12, max_lines=24, elem_id=ELEM_IDS["passage"],
                                 placeholder=f"Paste a text, or upload a {PASSAGE_FORMATS} file below")
            upload = gr.File(label=f"Upload a passage ({PASSAGE_FORMATS}; text up to {MAX_PASSAGE_BYTES // 1_000_000} MB, "
                                   f"documents up to {MAX_DOCUMENT_BYTES // 1_000_000} MB)",
                             file_types=list(PASSAGE_SUFFIXES), type="filepath", elem_id=ELEM_IDS["file"])
        with gr.Column(scale=2):
            n = gr.Slider(1, 20, value=DEFAULT_N, step=1, label="Number of questions", elem_id=ELEM_IDS["n"])
            mode = gr.Radio(list(MODE_LABELS), value="Open questions", label="Mode", elem_id=ELEM_IDS["mode"])
            answer = gr.Textbox(label="Answer", visible=False, elem_id=ELEM_IDS["answer"],
                                info="Select a span in the passage, or type the answer the questions should target")
            history = gr.Textbox(label="Conversation so far", lines=4, visible=False, elem_id=ELEM_IDS["history"],
                                 placeholder="Q: What is a volcano?\nA: an opening in the crust\n...")
            open_only = gr.Checkbox(value=QuestionSettings.open_only, label="Open questions only (no yes/no)")
            sentiment = gr.Checkbox(value=False, label="Weigh feeling (sentiment strength of each question)",
                                    elem_id=ELEM_IDS["sentiment"])
            with gr.Accordion("Advanced", open=False):
                style = gr.Dropdown(list(STYLES), value=QuestionSettings.style, label="Prompt style",
                                    info="auto: fewshot for causal LMs, chat for adapters, highlight for T5 models; "
                                         "chat needs a model that follows instructions (the bundled 135M one "
                                         "mostly writes about the passage instead)")
            with gr.Row():
                generate = gr.Button("Generate questions", variant="primary", elem_id=ELEM_IDS["generate"])
                forget = gr.Button("Forget shown questions", elem_id=ELEM_IDS["forget"])
    status = gr.Markdown(elem_id=ELEM_IDS["status"])
    # widths that fit every column in the tab: left to itself the table gave the question all it needed
    # and pushed Sentiment, Source and Sentence past the right edge
    table = gr.Dataframe(headers=COLUMNS, datatype=["number", "str", "number", "number", "number", "number", "number",
                                                    "str", "str"],
                         column_widths=["4%", "32%", "7%", "7%", "9%", "8%", "9%", "7%", "17%"],
                         interactive=False, wrap=True, label=TABLE_LABEL,
                         elem_id=ELEM_IDS["table"])
    source = gr.HTML(elem_id=ELEM_IDS["source"])
    with gr.Row(equal_height=True):
        selected = gr.Textbox(label="Selected question", scale=4, elem_id=ELEM_IDS["selected"])
        ask = gr.Button("Ask in chat", scale=1, elem_id=ELEM_IDS["ask_chat"])
    downloads = output_file("Download (CSV, JSON)", ELEM_IDS["download"], file_count="multiple")
    with gr.Accordion("Dropped candidates (why)", open=False):
        dropped = gr.Dataframe(headers=DROPPED_COLUMNS, column_widths=["36%", "24%", "10%", "30%"], interactive=False,
                               wrap=True, elem_id=ELEM_IDS["dropped"])

    upload.upload(on_upload, upload, [passage, status], api_visibility="private")
    mode.change(show_mode_inputs, mode, [answer, history], api_visibility="private")
    passage.select(on_passage_select, None, [answer, answer_start], api_visibility="private")
    generate.click(on_generate,
                   [passage, n, mode, answer, history, open_only, style, shared.model, shared.adapter, shared.quantize,
                    seen, answer_start, sentiment, questions],
                   [table, status, seen, questions, passage_used, downloads, dropped, source, selected],
                   api_name="generate_questions")
    table.select(on_select, [questions, passage_used], [source, selected], api_visibility="private")
    forget.click(forget_shown, None, [seen, status], api_visibility="private")
    chat_outputs = [shared.chat_input if shared.chat_input is not None else selected, shared.tabs, status]
    ask.click(ask_in_chat, [selected, questions, passage_used], chat_outputs, api_visibility="private")
