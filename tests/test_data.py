"""Tests for convo.data: format detection, exact fault messages, examples per task, token stats.

Bad inputs live in tests/data/bad/ with their exact messages in EXPECTED.json (table-driven).
Run: python -m pytest tests/test_data.py -q
"""
from __future__ import annotations

import hashlib
import io
import importlib.util
import json
import os
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from convo.data import (
    CQG_SYSTEM,
    MAX_BYTES,
    NO_ANSWER,
    NO_HISTORY,
    QA_CLOSED_SYSTEM,
    QA_SYSTEM,
    UNRECOGNISED,
    DataError,
    Passage,
    Turn,
    build_examples,
    fewshot_text,
    json_depth,
    load_data,
    load_examples,
    split_train_val,
    validate_bytes,
    validate_file,
)

DATA = Path(__file__).parent / "data"
GOOD, BAD = DATA / "good", DATA / "bad"
EXPECTED = json.loads((BAD / "EXPECTED.json").read_text(encoding="utf-8"))


def words(text: str) -> int:
    return len(text.split())


def load_make_coqa():
    spec = importlib.util.spec_from_file_location("make_coqa", DATA / "make_coqa.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- bad files


def test_a_missing_file_is_a_rejected_report_not_a_traceback(tmp_path):
    """A mistyped name (``convo data trian.json``, ``training.finetune --train_data trian.json``) ended in
    FileNotFoundError's traceback."""
    report = validate_file(tmp_path / "trian.json")
    assert not report.ok and report.error == f"no such file or folder: {tmp_path / 'trian.json'}"
    with pytest.raises(DataError, match="no such file or folder"):
        load_data(tmp_path / "trian.json")


def test_every_bad_file_is_listed_in_expected():
    on_disk = {p.name for p in BAD.iterdir() if p.name != "EXPECTED.json"}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_gives_its_exact_messages(name):
    expected = EXPECTED[name]
    report = validate_file(BAD / name)
    assert report.faults == expected["faults"]
    assert report.ok is expected["ok"]
    assert report.format == expected["format"]
    # the same bytes uploaded from memory give the same verdict
    again = validate_bytes((BAD / name).read_bytes(), name)
    assert (again.ok, again.faults) == (report.ok, report.faults)


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if not e["ok"]))
def test_rejected_file_raises_data_error_with_the_reason(name):
    with pytest.raises(DataError) as info:
        load_examples(BAD / name, "qg")
    assert str(info.value) == EXPECTED[name]["faults"][0]
    assert info.value.report.error == EXPECTED[name]["faults"][0]


def test_whole_file_rejections_keep_only_that_message():
    for name in ("empty.json", "binary.json", "not_utf8.json", "invalid_json.json", "deep.json", "unknown.json"):
        report = validate_file(BAD / name)
        assert report.faults == [report.error] and not report.ok and report.format == ""
        assert report.records == report.examples == 0


def test_unrecognised_message_is_the_documented_one():
    assert validate_file(BAD / "unknown.json").error == UNRECOGNISED + '; found an object with keys "rows"'


def test_over_size_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.json"
    with big.open("wb") as handle:
        handle.truncate(33_000_000)  # sparse file: the size is real, the disk use is not
    report = validate_file(big)
    assert report.faults == ["file is 33.0 MB, over the 32.0 MB limit"]
    assert not report.ok and report.size == 33_000_000 and report.sha256 == ""
    assert validate_bytes(b"[" + b" " * (33_000_000 - 2) + b"]", "big.json").faults == report.faults


def test_size_just_over_a_custom_cap_is_not_shown_as_equal():
    data = json.dumps([{"context": "x" * 990, "questions": ["Why?"]}]).encode()
    report = validate_bytes(data, "a.json", max_bytes=len(data) - 1)
    assert report.error == f"file is {len(data) / 1e6:.6f} MB, over the {(len(data) - 1) / 1e6:.6f} MB limit"
    assert validate_bytes(data, "a.json", max_bytes=len(data)).ok


def test_depth_scan_counts_brackets_outside_strings_only():
    assert json_depth('{"a": [[1], "]]]"]}') == 3
    assert json_depth('"[[[[\\"[["') == 0
    tricky = [{"context": "Brackets " + "[" * 40 + " in text are fine.", "questions": ["What is in the text?"]}]
    report = validate_bytes(json.dumps(tricky).encode(), "tricky.json")
    assert report.ok and report.faults == []


def test_utf8_bom_and_crlf_jsonl_are_accepted_with_physical_line_numbers():
    good = json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]})
    bad = json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "robot", "content": "Beep"}]})
    data = ("\ufeff" + good + "\r\n\r\n" + good.replace("Hi", "Hey") + "\r\n" + bad + "\r\n").encode("utf-8")
    report = validate_bytes(data, "chat.jsonl")
    assert report.ok and report.format == "chat-jsonl"
    assert report.faults == ['line 4, messages[1].role: expected "system", "user" or "assistant", got "robot"']
    assert (report.records, report.conversations, report.skipped) == (3, 2, 1)


def test_single_chat_object_reads_as_one_conversation():
    one = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], "meta": {"seed": 3}}
    report = validate_bytes(json.dumps(one, indent=2).encode(), "one.json")
    assert (report.ok, report.format, report.conversations, report.messages) == (True, "chat-jsonl", 1, 2)


def test_fault_list_is_capped_with_a_count_of_the_rest(tmp_path):
    records = [{"context": "", "questions": ["Q?"]} for _ in range(250)]
    records.append({"context": "The sky is blue.", "questions": ["What colour is the sky?"]})
    report = validate_file(write_json(tmp_path / "many.json", records))
    assert report.ok and report.skipped == 250 and report.fault_count == 250
    assert len(report.faults) == 201
    assert report.faults[0] == '[0]: empty "context"' and report.faults[199] == '[199]: empty "context"'
    assert report.faults[-1] == "... and 50 more faults"
    summary = report.summary()
    assert summary.count('- `[') == 20 and "- ... and 230 more" in summary and "[20]:" not in summary


# --------------------------------------------------------------------------- good files

GOOD_COUNTS = {
    # name: (format, records, passages, questions, answers, conversations, messages)
    "coqa.json": ("coqa", 3, 3, 16, 16, 0, 0),
    "coqa_simple.json": ("coqa-simple", 3, 3, 14, 9, 0, 0),
    "squad_v1.json": ("squad", 2, 3, 7, 7, 0, 0),
    "squad_v2.json": ("squad", 1, 1, 3, 2, 0, 0),  # and 1 unanswerable
    "chat.jsonl": ("chat-jsonl", 3, 0, 0, 0, 3, 12),
    "chat_list.json": ("chat-jsonl", 2, 0, 0, 0, 2, 7),
    "alpaca.json": ("alpaca", 3, 0, 0, 0, 3, 9),
    "sharegpt.jsonl": ("sharegpt", 2, 0, 0, 0, 2, 7),
    "squad_hf.jsonl": ("flat-qa", 4, 2, 4, 3, 0, 0),  # and 1 unanswerable
    "coqa_hf.jsonl": ("coqa", 2, 2, 7, 6, 0, 0),  # and 1 unanswerable
    "coqa_simple.jsonl": ("coqa-simple", 3, 3, 14, 9, 0, 0),
    # the JSON Lines files above as the Hugging Face Hub stores datasets (tests/data/make_parquet.py)
    "coqa_hf.parquet": ("coqa", 2, 2, 7, 6, 0, 0),
    "squad_hf.parquet": ("flat-qa", 4, 2, 4, 3, 0, 0),
    "chat.parquet": ("chat-jsonl", 3, 0, 0, 0, 3, 12),
    # chat.jsonl as datasets' save_to_disk writes it, an Arrow stream (tests/data/make_arrow.py)
    "chat.arrow": ("chat-jsonl", 3, 0, 0, 0, 3, 12),
    # spreadsheets' exports (tests/data/make_tables.py: pandas, Excel's ";" with a byte-order mark, tabs)
    "flat_qa.csv": ("flat-qa", 4, 2, 4, 3, 0, 0),  # the empty answer cell: a question without an answer
    "alpaca_excel.csv": ("alpaca", 3, 0, 0, 0, 3, 6),
    "alpaca.tsv": ("alpaca", 3, 0, 0, 0, 3, 6),
    "alpaca_cp1252.csv": ("alpaca", 2, 0, 0, 0, 2, 4),  # Excel's "CSV (Comma delimited)": Windows-1252
    "faq.csv": ("pairs", 2, 0, 0, 0, 2, 4),  # question and answer columns, no passage: one-turn chats
    # Excel workbooks written by XlsxWriter: pandas' to_excel, and a sheet with a title above its table
    "flat_qa.xlsx": ("flat-qa", 4, 2, 4, 3, 0, 0),
    "faq_sheet.xlsx": ("pairs", 4, 0, 0, 0, 4, 8),
    "prompt_completion.jsonl": ("pairs", 3, 0, 0, 0, 3, 7),  # OpenAI's legacy fine-tuning file (and TRL's)
    # preference pairs: Anthropic/hh-rlhf's transcripts (gzipped, as it stores them), TRL's lists of messages
    "preference_hh.jsonl.gz": ("preference", 3, 0, 0, 0, 3, 8),
    "preference_trl.jsonl": ("preference", 2, 0, 0, 0, 2, 5),
}


def test_every_good_file_has_expected_counts():
    assert {p.name for p in GOOD.iterdir()} == set(GOOD_COUNTS)


@pytest.mark.parametrize("name", sorted(GOOD_COUNTS))
def test_good_file_is_detected_and_counted(name):
    report = validate_file(GOOD / name)
    got = (report.format, report.records, report.passages, report.questions, report.answers,
           report.conversations, report.messages)
    assert got == GOOD_COUNTS[name]
    assert report.ok and report.faults == [] and report.error is None and report.skipped == 0
    assert report.sha256 == hashlib.sha256((GOOD / name).read_bytes()).hexdigest()
    assert report.size == (GOOD / name).stat().st_size
    assert report.task == ("chat" if name.startswith(("chat", "alpaca", "sharegpt", "faq", "prompt", "preference"))
                           else "qg")


def test_good_coqa_fixture_spans_point_at_the_story():
    for story in json.loads((GOOD / "coqa.json").read_text())["data"]:
        assert all(story["story"][a["span_start"]:a["span_end"]] == a["span_text"] for a in story["answers"])


def test_official_coqa_reads_into_passages():
    passages, report = load_data(GOOD / "coqa.json")
    assert [p.source for p in passages] == ["data[0]", "data[1]", "data[2]"]
    assert passages[0].context.startswith("Marta had lived in the same blue house")
    assert passages[0].turns[:2] == [Turn("Where did Marta live?", "in the same blue house on Pine Street"),
                                     Turn("For how long?", "forty years")]
    assert len(passages[2].turns) == 5 and report.examples == 16


def test_questions_without_answers_are_noted_with_what_they_mean_for_the_task(tmp_path):
    """A CoQA story without "answers" trains its questions without answers: not a fault (answers are
    optional, as in simplified CoQA), but the report says so, where, and what it means for the task
    (only the count "with answers 11" showed it)."""
    data = json.loads((GOOD / "coqa.json").read_text())
    del data["data"][1]["answers"]
    path = tmp_path / "no-answers.json"
    path.write_text(json.dumps(data))
    notes = {}
    for task in ("qg", "cqg", "qa"):
        report = validate_file(path, task=task)
        assert report.ok and report.faults == [] and report.unanswered_at == ["data[1]"], task
        notes[task] = [part for part in report.summary().split("\n\n") if part.startswith("**Note**")]
    assert notes["qa"] == ["**Note**: 5 of 16 questions have no answer (first in `data[1]`): they give no `qa` "
                           "example (the other tasks train on them)."]
    assert "`qg` finds the sentence each asks about from its words alone" in notes["qg"][0]
    assert "`cqg` shows them in the earlier turns without their answers" in notes["cqg"][0]
    assert validate_file(path, task="qa").examples == 11 and validate_file(path, task="qg").examples == 16
    # a file whose questions all have answers (or are marked unanswerable) has no note
    for name in ("coqa.json", "squad_v2.json"):
        assert "**Note**" not in validate_file(GOOD / name, task="qa").summary(), name


def test_squad_v2_impossible_question_gets_the_no_answer_target():
    passages, report = load_data(GOOD / "squad_v2.json")
    assert [t.answer for t in passages[0].turns] == ["sixty thousand", NO_ANSWER, "single"]
    assert (report.questions, report.answers, report.unanswerable) == (3, 2, 1)
    assert '| unanswerable (answer "unknown"; trained by `qa` only) | 1 |' in report.summary()
    # `qa` learns to say it does not know; question generation leaves the question out (no sentence
    # holds its answer: the qg prompt took an unrelated one)
    assert [e[-1]["content"] for e in build_examples(passages, "qa")] == ["sixty thousand", NO_ANSWER, "single"]
    for task in ("qg", "cqg", "qa_closed"):
        targets = [e[-1]["content"] for e in build_examples(passages, task)]
        assert len(targets) == 2 and passages[0].turns[1].question not in targets and NO_ANSWER not in targets, task
    assert validate_file(GOOD / "squad_v2.json", task="qg").examples == 2


def test_alpaca_and_sharegpt_records_are_conversations():
    """Instruction data as other tools write it (Alpaca: LLaMA-Factory, Stanford Alpaca; ShareGPT:
    FastChat, LLaMA-Factory) trains the chat task, each record one conversation."""
    conversations, report = load_data(GOOD / "alpaca.json")
    assert report.ok and report.format == "alpaca" and report.task == "chat"
    assert conversations[0] == [{"role": "user", "content": "Give three tips for staying healthy."},
                                {"role": "assistant", "content": "Eat a balanced diet, move every day, and sleep "
                                                                 "seven to nine hours."}]
    assert conversations[1][0]["content"] == "Translate the sentence into French.\n\nThe library opens at nine."
    assert [m["role"] for m in conversations[2]] == ["system", "user", "assistant", "user", "assistant"]
    assert conversations[2][1]["content"] == "When does the library open?"
    assert "**alpaca.json**: Alpaca, ready to train, 3 examples for task `chat`." in report.summary()
    conversations, report = load_data(GOOD / "sharegpt.jsonl")
    assert report.ok and report.format == "sharegpt" and [len(c) for c in conversations] == [4, 3]
    assert conversations[1][:2] == [{"role": "system", "content": "You are a curious assistant."},
                                    {"role": "user", "content": "I am learning the cello."}]
    examples, _ = load_examples(GOOD / "sharegpt.jsonl", "chat")
    assert examples[0][-1] == {"role": "assistant", "content": "Then water them often: pots dry out fast. What variety?"}


def test_alpaca_and_sharegpt_faults_name_the_record_and_field(tmp_path):
    alpaca = [{"instruction": "Say hi.", "input": "", "output": "Hi!"},
              {"instruction": "Say bye.", "input": 3, "output": ""},
              {"instruction": "Go on.", "output": "Sure.", "history": [["only one"]]}]
    report = validate_bytes(json.dumps(alpaca).encode(), "alpaca.json")
    assert report.ok and report.conversations == 1 and report.skipped == 2
    assert report.faults == ["[1].input: expected a string, got int", '[1]: empty "output"',
                             "[2].history[0]: expected [user message, reply]: two non-empty strings"]
    lines = [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
             {"conversations": [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "Hello"}]},
             {"conversations": [{"from": "human", "value": "Anyone?"}]}]
    report = validate_bytes("".join(json.dumps(line) + "\n" for line in lines).encode(), "chats.jsonl")
    assert report.ok and report.format == "sharegpt" and report.conversations == 1
    assert report.faults == ['line 2, conversations[1].from: expected "human", "gpt" or "system", got "bot"',
                             'line 3: no "gpt" message']
    # One conversation as a lone (pretty-printed) object, as a JSON file of one record
    alone = json.dumps({"instruction": "Say hi.", "output": "Hi! What brings you here?"}, indent=2)
    (tmp_path / "one.json").write_text(alone)
    conversations, report = load_data(tmp_path / "one.json")
    assert report.format == "alpaca" and conversations == [[{"role": "user", "content": "Say hi."},
                                                             {"role": "assistant", "content": "Hi! What brings you here?"}]]
    report = validate_bytes(json.dumps({"conversations": [{"from": "human", "value": "Hi"}]}).encode(), "one.json")
    assert not report.ok and report.format == "sharegpt" and report.faults[-1] == 'line 1: no "gpt" message'
    with pytest.raises(DataError, match='task "qg" needs passages with questions .* but this file is ShareGPT'):
        load_examples(GOOD / "sharegpt.jsonl", "qg")


def test_chat_messages_as_openai_parts_and_sharegpt_turns_as_messages(tmp_path):
    """Two layouts other tools write were refused: a message's content as OpenAI's list of parts
    ('messages[0].content: expected a string, got list') and ShareGPT turns written as chat messages,
    {"role", "content"} ('conversations[0]: missing "from"'). Both read now; a part that is not text
    is named, as is a role neither layout has."""
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi."}, {"type": "text", "text": "Rain?"}]},
                          {"role": "assistant", "content": [{"type": "text", "text": "Rain is water."}]}]}
    turns = {"conversations": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                               {"role": "assistant", "content": "Hello"}]}
    for name, record, fmt, conversation in [
            ("parts.jsonl", parts, "chat-jsonl", [{"role": "user", "content": "Hi.\n\nRain?"},
                                                  {"role": "assistant", "content": "Rain is water."}]),
            ("turns.jsonl", turns, "sharegpt", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                                {"role": "assistant", "content": "Hello"}])]:
        (tmp_path / name).write_text(json.dumps(record) + "\n")
        conversations, report = load_data(tmp_path / name)
        assert report.format == fmt and conversations == [conversation], name
    image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                                       {"type": "image_url", "image_url": {"url": "x.png"}}]},
                          {"role": "assistant", "content": []}]}
    report = validate_bytes(json.dumps(image).encode(), "image.json")
    assert not report.ok and report.faults[1:] == [
        'line 1, messages[0].content[1].type: expected "text" (only text is trained on), got "image_url"',
        'line 1, messages[1]: empty "content"']
    odd = {"conversations": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hello"}]}
    report = validate_bytes(json.dumps(odd).encode(), "odd.json")
    assert report.faults[1:] == ['line 1, conversations[1].role: expected "human", "gpt" or "system", got "bot"']


def test_coqa_as_hugging_face_datasets_writes_it(tmp_path):
    """``load_dataset("stanfordnlp/coqa")["train"].to_json(...)`` writes a passage a line, its questions
    a list of strings and its answers ``{"input_text": [...], "answer_start": [...], "answer_end": [...]}``:
    read as CoQA (as JSON Lines and as a list), "unknown" unanswerable. It was refused as an
    unrecognised format, and its list taken for simplified CoQA with every record at fault."""
    passages, report = load_data(GOOD / "coqa_hf.jsonl")
    assert report.ok and report.format == "coqa" and report.task == "qg" and len(passages) == 2
    assert [(t.question, t.answer) for t in passages[0].turns[:2]] == [
        ("Where did Marta live?", "in the same blue house on Pine Street"), ("For how long?", "forty years")]
    assert passages[0].turns[4].answer == NO_ANSWER and report.unanswerable == 1
    assert passages[0].source == "line 1" and passages[1].context.startswith("Mount Kilimanjaro")
    records = [json.loads(line) for line in (GOOD / "coqa_hf.jsonl").read_text().splitlines()]
    records[1]["answers"]["input_text"].pop()
    (tmp_path / "coqa_hf.json").write_text(json.dumps(records))
    passages, report = load_data(tmp_path / "coqa_hf.json")
    assert report.format == "coqa" and len(passages) == 1 and report.skipped == 1
    assert report.faults == ["[1]: 2 questions but 1 answers"]


def test_squad_as_hugging_face_datasets_writes_it(tmp_path):
    """``Dataset.to_json`` writes SQuAD flat, one question a line with ``answers: {text, answer_start}``:
    read as passages (questions on one context together), an empty ``text`` unanswerable; as a JSON
    list too. It was refused as an unrecognised format, and its list taken for simplified CoQA."""
    passages, report = load_data(GOOD / "squad_hf.jsonl")
    assert report.ok and report.format == "flat-qa" and report.task == "qg" and len(passages) == 2
    assert [(t.question, t.answer) for t in passages[0].turns] == [
        ("When was the Eiffel Tower finished?", "1889"), ("Where does it stand?", "in Paris"),
        ("Who painted it first?", NO_ANSWER)]
    assert report.unanswerable == 1 and passages[1].turns[0].answer == "to tell their hive where flowers are"
    records = [json.loads(line) for line in (GOOD / "squad_hf.jsonl").read_text().splitlines()]
    records[3]["answers"]["answer_start"] = [0]  # no longer points at its text
    (tmp_path / "squad_hf.json").write_text(json.dumps(records, indent=2))
    passages, report = load_data(tmp_path / "squad_hf.json")
    assert report.format == "flat-qa" and len(passages) == 1 and report.skipped == 1
    assert report.faults == ['[3].answers: answer_start 0 does not point at "to tell their hive where flowers are" '
                             '(the context there reads "Honeybees dance to tell their hive w")']


@pytest.mark.parametrize("name", ["coqa_hf", "squad_hf", "chat"])
def test_parquet_as_the_hub_stores_datasets_gives_the_examples_of_its_json_lines(name):
    """The Hub's files of ``stanfordnlp/coqa`` and ``rajpurkar/squad`` are Parquet: a new user's download
    was refused as "file looks binary, not JSON text". A table's rows read as JSON Lines records do."""
    for task in (["chat"] if name == "chat" else ["qg", "cqg", "qa"]):
        examples, report = load_examples(GOOD / f"{name}.parquet", task)
        assert examples == load_examples(GOOD / f"{name}.jsonl", task)[0] and report.task == task
    passages, _ = load_data(GOOD / f"{name}.parquet")
    assert [getattr(p, "source", None) for p in passages][:1] == [None if name == "chat" else "row 1"]


def test_a_spreadsheets_table_gives_the_examples_of_its_json_records(tmp_path):
    """A CSV or TSV file (a spreadsheet's export; the file picker did not offer it, and given anyway it
    was "invalid JSON") is read as JSON records with its columns as keys; an empty cell is a missing
    value, and a fault names the spreadsheet's row."""
    flat = [json.loads(line) for line in (GOOD / "squad_hf.jsonl").read_text().splitlines()]
    for record in flat:
        texts = record.pop("answers")["text"]
        if texts:
            record["answer"] = texts[0]
    (tmp_path / "flat.jsonl").write_text("\n".join(json.dumps(r) for r in flat))
    for task in ("qg", "cqg", "qa"):
        examples, report = load_examples(GOOD / "flat_qa.csv", task)
        assert examples == load_examples(tmp_path / "flat.jsonl", task)[0] and len(examples) > 0, task
    alpaca = [r for r in json.loads((GOOD / "alpaca.json").read_text()) if "history" not in r]
    alpaca.append({"instruction": 'Write a haiku about "rain", in two lines.',
                   "output": "Grey clouds, quiet roofs,\nthe street shines; a cat waits, dry."})
    (tmp_path / "alpaca.json").write_text(json.dumps(alpaca))
    expected = load_examples(tmp_path / "alpaca.json", "chat")[0]
    for name in ("alpaca_excel.csv", "alpaca.tsv"):  # ";" and a byte-order mark; tabs
        assert load_examples(GOOD / name, "chat")[0] == expected, name
    examples, _ = load_examples(GOOD / "alpaca_cp1252.csv", "chat")  # Excel's non-UTF-8 CSV reads as it shows
    assert [e[-1]["content"] for e in examples] == ["A crème brûlée, or a café éclair.", "Danke schön – or „Danke“."]
    assert validate_bytes(b"\x81", "a.json").error == "file is not UTF-8 text (invalid byte 0x81 at offset 0)"
    assert validate_bytes(b"a,b\n\x81,x", "a.csv").error == ("file is not UTF-8 or cp1252 text (invalid byte 0x81 "
                                                              "at offset 4)")
    passages, _ = load_data(GOOD / "flat_qa.csv")
    assert [p.source for p in passages] == ["row 2", "row 5"]  # the header is row 1
    for text, message in [
        ("", "file is empty"),
        ("\n\n", "file is empty"),
        ("context,question,answer\n", "file has no records: the table has no rows under its header"),
        ("question,question\nWhy?,How?\n", "file names the column 'question' twice in its header"),
        ('context,question\nA,Why?\n"An open quote,Why?\nmore\n', "file is not a table that can be read: a quoted "
                                                                  "cell that starts on line 3 is never closed"),
        ("context,question\nA,Why?\n\x00\n", "file looks binary, not a table"),
    ]:
        report = validate_bytes(text.encode(), "upload.csv")
        assert not report.ok and report.error == message, (text, report.error)
    long = "Bees dance. " * 20_000  # a 240 kB passage in one cell (the csv module's own limit is 128 KB)
    report = validate_bytes(f"context,question\n{long},Why do bees dance?\n".encode(), "long.csv")
    assert report.ok and report.questions == 1, report.error


def test_an_excel_workbook_reads_as_its_csv_export(tmp_path):
    """A spreadsheet of training data is often an .xlsx, which was "an office document, not training
    data". Its first sheet now reads as the same table saved as CSV does, laid out as people lay one
    out (a title above the header, the table from column B), with numbers, dates and booleans as text."""
    for task in ("qg", "qa"):
        assert load_examples(GOOD / "flat_qa.xlsx", task)[0] == load_examples(GOOD / "flat_qa.csv", task)[0]
    examples, report = load_examples(GOOD / "faq_sheet.xlsx", None)
    assert report.task == "chat" and [(e[0]["content"], e[1]["content"]) for e in examples] == [
        ("When does the library open?", "At nine on weekdays, at eleven on Sundays."),
        ("How many books can I borrow?", "12"), ("When did the new wing open?", "2024-05-01"),
        ("Is there wifi?", "TRUE")]
    passages, _ = load_data(GOOD / "flat_qa.xlsx")
    assert [p.source for p in passages] == ["row 2", "row 5"]  # Excel's row numbers, as in the CSV
    # what cannot be read says what to do, and a workbook that unpacks to more than the cap is not unpacked
    whole = (GOOD / "faq_sheet.xlsx").read_bytes()
    for data, name, message in [
        (whole[:400], "cut.xlsx", "file is not an Excel workbook that can be read (File is not a zip file)"),
        (b"\xd0\xcf\x11\xe0" + bytes(600), "old.xls", "file is a spreadsheet that convo does not read: save it as "
         "an Excel workbook (.xlsx) or as CSV, its first row naming the columns"),
        (b"\xd0\xcf\x11\xe0" + bytes(600), "locked.xlsx", "file is an Excel workbook locked with a password: save a "
         "copy without the password and use that"),
    ]:
        assert validate_bytes(data, name).error == message, name
    def changed(part: str, change) -> bytes:
        """The workbook with one part's bytes changed (None: left out)."""
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(whole)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as into:
            for info in source.infolist():
                data = change(source.read(info)) if info.filename == part else source.read(info)
                if data is not None:
                    into.writestr(info, data)
        return out.getvalue()

    laughs = ('<!DOCTYPE s [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {b} "{("&" + a + ";") * 10}">' for a, b in zip("abcdef", "bcdefg")) + ']><sst><si><t>&g;</t></si></sst>')
    for data, why in [(changed("xl/worksheets/sheet1.xml", lambda d: d[:len(d) // 2]), "ParseError: unclosed token"),
                      (changed("xl/sharedStrings.xml", lambda d: laughs.encode()), "ParseError: limit on input "
                                                                                   "amplification factor")]:
        error = validate_bytes(data, "damaged.xlsx").error  # a sheet cut short; a billion laughs, refused
        assert error.startswith(f"file is not an Excel workbook that can be read ({why}"), error
    padded = io.BytesIO(whole)
    with zipfile.ZipFile(padded, "a", zipfile.ZIP_DEFLATED) as into:
        into.writestr("xl/media/padding.bin", bytes(5_000_000))  # 5 MB of zeros, about 5 kB packed
    report = validate_bytes(padded.getvalue(), "padded.xlsx", max_bytes=1_000_000)
    assert report.error == ("file unpacks to 5.0 MB, over the 4.0 MB a workbook may unpack to: split it into "
                            "smaller files"), report.error
    assert validate_bytes(padded.getvalue(), "padded.xlsx").ok  # under the default cap it is read


def test_a_preference_pair_trains_on_its_chosen_conversation(tmp_path):
    """Preference data (``{"chosen", "rejected"}``, the Hub's most common chat layout after chat JSONL) was
    "unrecognised format". Its chosen conversation is now an example: a Human:/Assistant: transcript as
    Anthropic/hh-rlhf writes it, TRL's lists of messages with or without a separate prompt, a reply to a
    ``question`` with a ``system`` text as Intel/orca_dpo_pairs, or a transcript cut into prompt and reply."""
    examples, report = load_examples(GOOD / "preference_hh.jsonl.gz", None)
    assert report.task == "chat" and "trains on the chosen replies" in report.summary()
    assert examples[0] == [
        {"role": "user", "content": "How do I keep basil alive on a windowsill?"},
        {"role": "assistant", "content": "Give it at least six hours of sun, water when the top of the soil is dry, "
                                         "and pinch off the flower buds."},
        {"role": "user", "content": "Why the flower buds?"},
        {"role": "assistant", "content": "Once basil flowers, it puts its energy into seeds and the leaves turn bitter."}]
    examples, _ = load_examples(GOOD / "preference_trl.jsonl", "chat")
    assert [m["role"] for m in examples[0]] == ["user", "assistant"] and examples[0][1]["content"].startswith("Rivers")
    assert [m["role"] for m in examples[1]] == ["system", "user", "assistant"]
    records = [{"system": "You are helpful.", "question": "2+2?", "chosen": "4", "rejected": "5"},
               {"prompt": "\n\nHuman: Hi there\n\nAssistant:", "chosen": " Hello! How can I help?", "rejected": " Go."},
               {"chosen": "just text", "rejected": "x"}, {"chosen": 3, "rejected": 4},
               {"chosen": "\n\nHuman: hi\n\nAssistant:", "rejected": "x"},
               {"chosen": [{"role": "assistant", "content": "Hello"}], "rejected": []}]
    (tmp_path / "pairs.json").write_text(json.dumps(records))
    examples, report = load_examples(tmp_path / "pairs.json", "chat")
    assert examples == [[{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "2+2?"},
                         {"role": "assistant", "content": "4"}],
                        [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}]]
    assert report.faults == ['[2].chosen: expected a "Human:" and "Assistant:" transcript, or a "prompt" beside it',
                             "[3].chosen: expected text or a list of messages, got int",
                             "[4].chosen: the chosen reply is empty", "[5]: no user message"]
    # TRL's unpaired preference data (for KTO): a completion labelled false is not trained on
    kto = [{"prompt": "Name a red fruit.", "completion": "A strawberry.", "label": True},
           {"prompt": [{"role": "user", "content": "Name a red fruit."}],
            "completion": [{"role": "assistant", "content": "A banana."}], "label": False}]
    (tmp_path / "kto.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kto))
    examples, report = load_examples(tmp_path / "kto.jsonl", "chat")
    assert examples == [[{"role": "user", "content": "Name a red fruit."}, {"role": "assistant", "content": "A strawberry."}]]
    assert report.faults == ["line 2, label: false: a completion marked undesirable (KTO data) is not trained on"]
    # a spreadsheet of prompts with a chosen and a rejected reply
    (tmp_path / "pairs.csv").write_text("prompt,chosen,rejected\nName a red fruit.,A strawberry.,A banana.\n")
    assert load_examples(tmp_path / "pairs.csv", None)[0] == [[{"role": "user", "content": "Name a red fruit."},
                                                              {"role": "assistant", "content": "A strawberry."}]]


@pytest.mark.parametrize("name", ["chat.jsonl", "squad_v2.json", "alpaca_excel.csv", "squad_hf.parquet"])
def test_a_gzipped_file_reads_as_the_file_inside(tmp_path, name):
    """Hub datasets often keep a split as ``train.jsonl.gz`` (Anthropic/hh-rlhf, OpenAssistant): it was "file
    looks binary, not JSON text". A file compressed by the ``gzip`` tool now reads as the file inside, and
    the report describes the file uploaded (its size and hash)."""
    (tmp_path / name).write_bytes((GOOD / name).read_bytes())
    subprocess.run(["gzip", "-k", "-9", str(tmp_path / name)], check=True)
    packed = tmp_path / f"{name}.gz"
    report = validate_file(packed)
    assert report.ok and report.name == f"{name}.gz" and report.size == packed.stat().st_size
    assert report.sha256 == hashlib.sha256(packed.read_bytes()).hexdigest()
    task = report.task
    assert load_examples(packed, task)[0] == load_examples(GOOD / name, task)[0]


def test_a_gzipped_file_is_held_to_the_upload_cap_and_named_when_damaged():
    import gzip

    inside = b'{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
    bomb = gzip.compress(inside * (2**21 // len(inside) + 1))  # 2 MB inside, about 7 kB packed
    report = validate_bytes(bomb, "big.jsonl.gz", max_bytes=1_000_000)
    assert report.error == ("file unpacks to more than 1.0 MB, the limit of the file inside a .gz: split it into "
                            "smaller files"), report.error
    assert validate_bytes(bomb, "big.jsonl.gz").ok  # under the default cap it is read
    assert validate_bytes(gzip.compress(inside)[:-12], "cut.jsonl.gz").error == (
        "file is a gzip file that ends early (cut short in the download?)")
    assert validate_bytes(b"\x1f\x8b" + bytes(30), "x.jsonl.gz").error.startswith(
        "file is not a gzip file that can be read (Error -3 while decompressing data")
    two = gzip.compress(inside) + gzip.compress(inside.replace(b"Hi", b"Hey"))  # ``cat a.gz b.gz``: two members
    assert validate_bytes(two, "two.jsonl.gz").conversations == 2


def test_a_message_and_its_reply_in_two_fields_is_a_one_turn_chat(tmp_path):
    """OpenAI's legacy fine-tuning JSONL and TRL's are ``{"prompt", "completion"}``; other tools write
    ``{"prompt", "response"}``, ``{"input", "output"}``, and a spreadsheet of FAQs ``question, answer``.
    They were "unrecognised format"; each record is now a user message and its reply."""
    examples, report = load_examples(GOOD / "prompt_completion.jsonl", None)
    assert report.task == "chat" and report.format == "pairs"
    assert examples[1] == [{"role": "system", "content": "Answer briefly."},
                           {"role": "user", "content": "How many legs does a spider have?"},
                           {"role": "assistant", "content": "Eight."}]
    examples, _ = load_examples(GOOD / "faq.csv", "chat")
    assert examples[0] == [{"role": "user", "content": "When does the library open?"},
                           {"role": "assistant", "content": "At nine on weekdays, at eleven on Sundays."}]
    pairs = [{"prompt": "Hi?", "response": "Hello."}, {"input": "Hi?", "output": "Hello."}]
    for record in pairs:
        (tmp_path / "one.json").write_text(json.dumps([record]))
        assert load_examples(tmp_path / "one.json", "chat")[0][0][-1] == {"role": "assistant", "content": "Hello."}
    # TRL's conversational prompt-completion: lists of messages
    trl = [{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sky colour?"}],
            "completion": [{"role": "assistant", "content": "Blue."}]},
           {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "bot", "content": "Hey"}]}]
    (tmp_path / "trl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in trl))
    examples, report = load_examples(tmp_path / "trl.jsonl", None)
    assert examples == [trl[0]["prompt"] + trl[0]["completion"]] and report.task == "chat"
    assert report.faults == ['line 2, completion[0].role: expected "system", "user" or "assistant", got "bot"']
    # a record with a passage is still a flat QA question; a faulty record is named
    flat = {"context": "Bees make honey.", "question": "What do bees make?", "answer": "honey"}
    (tmp_path / "flat.jsonl").write_text(json.dumps(flat) + "\n" + json.dumps({**flat, "question": "Who makes it?"}))
    assert validate_file(tmp_path / "flat.jsonl").format == "flat-qa"
    (tmp_path / "bad.jsonl").write_text('{"prompt": "Hi?", "completion": "Hello."}\n{"prompt": "Yo?", "completion": 3}\n')
    report = validate_file(tmp_path / "bad.jsonl")
    assert report.ok and report.examples == 1 and report.faults == ['line 2, completion: expected a string, got int']


def test_a_parquet_upload_is_capped_by_what_it_unpacks_to():
    """Columns are compressed (SQuAD's stores each paragraph again for each question): the upload's
    cap is on what they unpack to, PARQUET_UNPACKED times the upload limit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from convo.data.pipeline import PARQUET_UNPACKED

    context = "Bees make honey from the nectar of flowers. " * 400
    rows = [{"context": context, "question": f"What do bees make, question {n}?",
             "answers": {"text": ["honey"], "answer_start": [10]}} for n in range(60)]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    data = sink.getvalue().to_pybytes()
    assert len(data) < 20_000  # about a million characters of context, stored once
    report = validate_bytes(data, "squad.parquet", max_bytes=len(data))
    assert report.error == (f"file is a Parquet table that unpacks to more than {PARQUET_UNPACKED * len(data) / 1e6:.1f} "
                            "MB, the limit: split it into smaller files")
    report = validate_bytes(data, "squad.parquet", max_bytes=400_000 // PARQUET_UNPACKED * 4)
    assert report.ok and report.questions == 60 and report.passages == 1
    assert validate_bytes(data, "squad.parquet", max_bytes=None).ok  # a file on this machine: no cap
    # the paragraph Arrow repeats in each row is held once (SQuAD's train file: 325 -> 290 MB at its peak)
    from convo.data import parquet_rows

    rows, columns = parquet_rows(data)
    assert columns == ["context", "question", "answers"] and len(rows) == 60
    assert all(row["context"] is rows[0]["context"] for row in rows) and rows[0]["context"] == context


def test_a_dataset_saved_with_save_to_disk_is_read_from_its_folder(tmp_path):
    """``Dataset.save_to_disk`` writes a folder (its Arrow files and JSON listings), and
    ``DatasetDict.save_to_disk`` a folder per split: named where a data file goes, such a folder is read
    as its (train) split's Arrow files joined, in order. Any other folder is a clear error naming what
    is in it, where the reader raised IsADirectoryError."""
    saved = DATA / "saved"
    examples, report = load_examples(saved / "chat", None)
    assert (report.format, report.conversations, report.name) == ("chat-jsonl", 3, "chat")
    assert examples == load_examples(GOOD / "chat.jsonl", None)[0]
    # a DatasetDict: its train split (two shards, as num_shards wrote them), or a split named by its folder
    examples, report = load_examples(saved / "squad_dict", "qg")
    assert (report.format, report.records, report.questions) == ("flat-qa", 4, 4)
    assert examples == load_examples(GOOD / "squad_hf.jsonl", "qg")[0]
    assert validate_file(saved / "squad_dict" / "validation").questions == 2
    # the same file uploaded from memory: an Arrow stream is told by its bytes, not its name
    data = (saved / "squad_dict" / "train" / "data-00000-of-00002.arrow").read_bytes()
    assert validate_bytes(data, "upload").records == 2
    # folders that are no saved dataset, or a damaged one
    assert validate_file(saved).error == ("folder is not a data file, nor a dataset saved by datasets' save_to_disk: "
                                          "name a data file or a saved dataset in it (chat/, squad_dict/)")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "train.csv").write_text("question,answer\nWhy?,Because.\n")
    assert validate_file(tmp_path).error.endswith("name a data file or a saved dataset in it (train.csv)")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "state.json").write_text('{"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}')
    assert validate_file(broken).error == ("folder is a dataset saved by datasets whose data file "
                                           "data-00000-of-00001.arrow is missing")
    (broken / "data-00000-of-00001.arrow").write_bytes((GOOD / "chat.arrow").read_bytes()[:300])
    assert validate_file(broken).error.startswith("file is not an Arrow table that can be read (ArrowInvalid: ")
    (broken / "state.json").write_text('{"_data_files": [{"filename": "../chat/data-00000-of-00001.arrow"}]}')
    assert validate_file(broken).error == ("folder is a dataset saved by datasets whose state.json names a file "
                                           "outside it: '../chat/data-00000-of-00001.arrow'")
    (broken / "state.json").write_text("{")
    assert validate_file(broken).error.startswith("folder is a dataset saved by datasets whose state.json cannot be read")
    two = tmp_path / "two"
    two.mkdir()
    (two / "dataset_dict.json").write_text('{"splits": ["a", "b"]}')
    for split in ("a", "b"):
        (two / split).mkdir()
    assert validate_file(two).error == (f"folder is a DatasetDict saved by datasets with the splits a, b and none named "
                                        f"train: name one, as {two / 'a'}")
    # an upload's cap counts every file of the split, before any is read
    size = sum(f.stat().st_size for f in (saved / "squad_dict" / "train").glob("*.arrow"))
    assert validate_file(saved / "squad_dict", max_bytes=size - 1).error == (
        f"file is {size / 1e6:.6f} MB, over the {(size - 1) / 1e6:.6f} MB limit")


def test_arrow_files_of_either_layout_and_their_caps():
    """pyarrow writes Arrow as a stream (what datasets writes) or as the random-access file format; both read,
    capped as Parquet is: by rows, and by what they unpack to."""
    import pyarrow as pa

    from convo.data import arrow_rows, is_arrow
    from convo.data.pipeline import PARQUET_UNPACKED

    rows = [{"prompt": f"Question {n}?", "completion": f"Answer {n}."} for n in range(200)]
    table = pa.Table.from_pylist(rows)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=150)
    data = sink.getvalue().to_pybytes()
    assert data[:6] == b"ARROW1" and is_arrow(data)
    assert arrow_rows(data) == (rows, ["prompt", "completion"])
    report = validate_bytes(data, "pairs.arrow")
    assert (report.format, report.conversations) == ("pairs", 200)
    with pytest.raises(ValueError, match=r"^is an Arrow table of more than 199 rows, the limit: split it"):
        arrow_rows(data, max_rows=199)
    # compressed batches (a batch unpacks whole when read: 86 kB of zstd took 2.1 GB before the cap saw it)
    # are refused before any is read, a dictionary's too
    big = pa.Table.from_pylist([{"text": "honey " * 50_000, "kind": "bee"}] * 40)
    big = big.set_column(1, "kind", pa.compute.dictionary_encode(big["kind"]))
    for compression in ("zstd", "lz4"):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, big.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as writer:
            writer.write_table(big)
        packed = sink.getvalue().to_pybytes()
        assert len(packed) < 100_000
        with pytest.raises(ValueError, match=r"^is a compressed Arrow table \(its record batches are zstd or lz4\)"):
            arrow_rows(packed, max_unpacked=1_000_000)
    with pytest.raises(ValueError, match=r"^is an Arrow table that unpacks to more than 0\.0 MB, the limit"):
        arrow_rows(data, max_unpacked=1000)
    assert validate_bytes(data, "pairs.arrow", max_bytes=1000 // PARQUET_UNPACKED).error.startswith(
        "file is ")  # over the upload cap itself
    other = validate_bytes((DATA / "saved" / "chat" / "dataset_info.json").read_bytes(), "dataset_info.json")
    assert not other.ok and "found an object with keys" in other.error  # a listing is no data


def test_a_first_record_without_its_telling_key_hides_no_format_in_json_lines_either():
    """The first record that has a key telling the format decides it, in JSON Lines (as datasets writes
    CoQA) as in a JSON list; the first record's fault is named."""
    stories = json.loads((BAD / "coqa_first_missing_story.json").read_text(encoding="utf-8"))["data"]
    report = validate_bytes("\n".join(json.dumps(story) for story in stories).encode(), "coqa.jsonl")
    assert (report.ok, report.format, report.faults) == (True, "coqa", ['line 1: missing "story"'])


def test_simplified_coqa_answers_are_optional():
    passages, _ = load_data(GOOD / "coqa_simple.json")
    assert [t.answer for t in passages[1].turns] == [None] * 5
    assert passages[2].turns[0] == Turn("Where is Mount Kilimanjaro?", "in Tanzania")


# --------------------------------------------------------------------------- examples per task


def roles(example):
    return [m["role"] for m in example]


def test_qg_examples_ask_about_the_span_that_holds_the_answer():
    """A qg example is the few-shot completion prompt over the sentence unit its answer is in (the
    span the Questions tab later targets), then the human question: each question of a passage gets
    its own prompt, not one passage prompt shared by every question."""
    passages, _ = load_data(GOOD / "coqa.json")
    examples = build_examples(passages, "qg")
    assert len(examples) == 16
    assert examples[0] == [{"role": "fewshot", "content": "Marta had lived in the same blue house on Pine Street "
                                                          "for forty years."},
                           {"role": "assistant", "content": "Where did Marta live?"}]
    assert examples[2][0]["content"].startswith("Every spring she planted tomatoes, beans and sunflowers")
    assert all(roles(e) == ["fewshot", "assistant"] for e in examples)
    for example, (passage, turn) in zip(examples, [(p, t) for p in passages for t in p.turns]):
        assert example[0]["content"] in passage.context
        assert turn.answer.lower() in example[0]["content"].lower() or turn.answer == "unknown" \
            or turn.answer not in passage.context
    assert len({e[0]["content"] for e in examples}) >= 8  # many spans, not one per passage


def test_qg_example_without_the_answer_in_the_text_takes_the_sentence_sharing_most_words():
    passage = Passage("Ada Lovelace was born in London. She wrote the first program for an engine.",
                      [Turn("What did Ada write for the engine?", "a program"), Turn("Where was she born?", "London")])
    first, second = build_examples([passage], "qg")
    assert first[0]["content"] == passage.context  # "She ..." joins the sentence before it
    assert second[0]["content"] == "Ada Lovelace was born in London."


def test_cqg_examples_carry_the_earlier_turns():
    passages, _ = load_data(GOOD / "coqa.json")
    examples = build_examples(passages, "cqg")
    assert len(examples) == 16 and all(e[0]["content"] == CQG_SYSTEM for e in examples)
    assert examples[0][1]["content"].endswith("Conversation so far:\n" + NO_HISTORY)
    third = examples[2]
    assert third[1]["content"].endswith(
        "Conversation so far:\nQ: Where did Marta live?\nA: in the same blue house on Pine Street\n"
        "Q: For how long?\nA: forty years")
    assert third[-1] == {"role": "assistant", "content": "What did she plant every spring?"}
    # the second passage starts a fresh conversation
    assert examples[6][1]["content"].endswith(NO_HISTORY) and passages[1].context in examples[6][1]["content"]


def test_cqg_history_without_answers_lists_questions_only():
    passages, _ = load_data(GOOD / "coqa_simple.json")
    examples = build_examples(passages[1:2], "cqg")
    assert examples[2][1]["content"].endswith(
        "Q: What did the council vote to do?\nQ: When was the bridge built?")


def test_qa_examples_use_passage_and_question_and_skip_unanswered():
    passages, _ = load_data(GOOD / "coqa_simple.json")
    examples = build_examples(passages, "qa")
    assert len(examples) == 9
    assert examples[0][0]["content"] == QA_SYSTEM
    assert passages[0].context in examples[0][1]["content"] and "Question: Where did Marta live?" in examples[0][1]["content"]
    assert examples[0][-1] == {"role": "assistant", "content": "in the same blue house on Pine Street"}


def test_qa_closed_examples_have_no_passage():
    passages, _ = load_data(GOOD / "squad_v1.json")
    examples = build_examples(passages, "qa_closed")
    assert len(examples) == 7
    assert examples[0] == [{"role": "system", "content": QA_CLOSED_SYSTEM},
                           {"role": "user", "content": "In which state is Notre Dame?"},
                           {"role": "assistant", "content": "Indiana"}]
    assert not any(p.context[:40] in m["content"] for e in examples for m in e for p in passages)


def test_chat_examples_keep_whole_conversations_ending_on_assistant():
    conversations, _ = load_data(GOOD / "chat.jsonl")
    examples = build_examples(conversations, "chat")
    assert [len(e) for e in examples] == [5, 2, 4]  # the third ends with a user turn, which is dropped
    assert roles(examples[0]) == ["system", "user", "assistant", "user", "assistant"]
    assert all(e[-1]["role"] == "assistant" and all(set(m) == {"role", "content"} for m in e) for e in examples)
    assert examples[2][-1]["content"].startswith("That is slow")


@pytest.mark.parametrize("task", ["qg", "cqg", "qa", "qa_closed"])
def test_every_qa_task_ends_on_the_assistant_target(task):
    for name in ("coqa.json", "coqa_simple.json", "squad_v1.json", "squad_v2.json"):
        examples, report = load_examples(GOOD / name, task)
        assert examples and report.examples == len(examples) and report.task == task
        assert all(e[-1]["role"] == "assistant" and e[-1]["content"].strip() for e in examples)
        assert all(roles(e)[:-1] == (["fewshot"] if task == "qg" else ["system", "user"]) for e in examples)


def test_identical_examples_are_kept_once():
    passage = Passage("Ada wrote the first program.", [Turn("Who wrote the first program?", "Ada"),
                                                      Turn("Who wrote the first program?", "Ada"),
                                                      Turn("What did she write?", "the first program")])
    assert len(build_examples([passage], "qg")) == 2
    assert len(build_examples([passage], "cqg")) == 3  # different histories, different examples


def test_build_examples_refuses_the_wrong_kind_of_data():
    with pytest.raises(ValueError, match='unknown task "summarise"'):
        build_examples([], "summarise")
    with pytest.raises(ValueError, match='task "chat" needs chat conversations, got Passage'):
        build_examples([Passage("x", [Turn("y?")])], "chat")
    with pytest.raises(ValueError, match='task "qg" needs Passage objects, got list'):
        build_examples([[{"role": "user", "content": "hi"}]], "qg")


def test_task_and_format_mismatch_is_rejected_with_one_message(tmp_path):
    with pytest.raises(DataError) as info:
        load_examples(GOOD / "chat.jsonl", "qg")
    assert str(info.value) == 'task "qg" needs passages with questions (CoQA or SQuAD), but this file is chat JSONL'
    with pytest.raises(DataError) as info:
        load_examples(GOOD / "coqa.json", "chat")
    assert str(info.value) == ('task "chat" needs conversations (chat JSONL, Alpaca, ShareGPT, prompt/completion or '
                               'preference pairs), but this file is CoQA')
    no_answers = write_json(tmp_path / "q.json", [{"context": "Rain falls.", "questions": ["What falls?"]}])
    with pytest.raises(DataError) as info:
        load_examples(no_answers, "qa")
    assert str(info.value) == 'task "qa" needs answers, but no question in this file has one'
    assert load_examples(no_answers, "qg")[1].ok


def test_all_records_faulty_raises_naming_the_count_and_keeps_the_faults():
    with pytest.raises(DataError) as info:
        load_examples(BAD / "simple_empty_context.json", "qg")
    assert str(info.value) == "no valid records: 1 of 1 skipped for faults"
    assert info.value.report.faults[1:] == ['[0]: empty "context"']


def test_faulty_records_are_skipped_and_the_rest_used():
    examples, report = load_examples(BAD / "coqa_missing_input_text.json", "qa")
    assert report.ok and report.skipped == 1 and report.passages == 1
    assert len(examples) == 6 and report.faults == ['data[1].questions[1]: missing "input_text"']
    # one bad question skips its story: the report says how many questions went with it
    assert report.skipped_questions == 5 and "| skipped for faults | 1 (with 5 questions) |" in report.summary()
    assert validate_file(BAD / "squad_bad_answer_start.json").skipped_questions == 3  # the paragraph's qas


def test_duplicate_passage_is_dropped_and_repeated_turn_noted():
    passages, report = load_data(BAD / "duplicate_questions.json")
    assert [p.source for p in passages] == ["[0]", "[1]"] and report.duplicates == 2
    assert len(build_examples(passages, "qg")) == 3 + 3  # the repeated question is one example


def test_repeated_chat_conversation_is_skipped_by_line():
    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! What brings you here?"}]}
    other = {"messages": [{"role": "user", "content": "Hey"}, {"role": "assistant", "content": "Hi! How was your day?"}]}
    data = "\n".join(json.dumps(r) for r in (good, other, good)).encode()
    report = validate_bytes(data, "dupes.jsonl")
    assert report.ok and report.conversations == 2 and report.duplicates == 1 and report.examples == 2
    assert report.faults == ["duplicates: 1 conversation repeats an earlier one and was skipped: line 3 (same as line 1)"]


def test_cli_prints_the_summary_and_exits_nonzero_on_rejection(capsys):
    from convo.cli.data import main

    assert main([str(GOOD / "coqa.json"), "--task", "cqg"]) == 0
    assert capsys.readouterr().out.startswith("**coqa.json**: CoQA, ready to train, 16 examples for task `cqg`.")
    assert main([str(BAD / "deep.json")]) == 1
    assert "rejected: JSON is nested deeper than 32 levels" in capsys.readouterr().out


# --------------------------------------------------------------------------- token lengths


def cqg_word_counts(path: Path) -> list[int]:
    """Independent count of the plain rendering: 'system: ..', 'user: Passage:\n.. Conversation so far:\n
    Q: .. A: ..', 'assistant: ..'."""
    counts = []
    for record in json.loads(path.read_text()):
        counts += cqg_counts(record["context"], record["questions"], record.get("answers"))
    return counts


def cqg_counts(context: str, questions: list[str], answers: list[str] | None) -> list[int]:
    counts, history = [], 0
    for question, answer in zip(questions, answers or [None] * len(questions)):
        counts.append(words(CQG_SYSTEM) + words(context) + (history or words(NO_HISTORY)) + words(question) + 7)
        history += 1 + words(question) + (1 + words(answer) if answer is not None else 0)
    return counts


class EncodeOnly:
    def encode(self, text):
        return list(range(len(text.split())))


@pytest.mark.parametrize("tokenizer", [words, lambda t: t.split(), lambda t: {"input_ids": t.split()}, EncodeOnly()],
                         ids=["count", "ids", "mapping", "encode"])
def test_token_stats_under_a_whitespace_tokenizer(tokenizer):
    counts = sorted(cqg_word_counts(GOOD / "coqa_simple.json"))
    report = validate_file(GOOD / "coqa_simple.json", task="cqg", tokenizer=tokenizer, max_length=counts[-3])
    stats = report.token_stats
    assert (stats.count, stats.min, stats.max) == (14, counts[0], counts[-1])
    assert stats.mean == round(sum(counts) / 14, 1)
    assert stats.p95 == counts[13]  # nearest rank: ceil(0.95 * 14) = 14th value
    assert report.truncated == sum(c > counts[-3] for c in counts) == 2
    assert all(" turn " in where for where in report.truncated_at) and len(report.truncated_at) == 2
    assert f"2 of 14 longer than {counts[-3]} tokens" in report.summary()


def test_p95_is_the_nearest_rank_value():
    # 20 examples with lengths base+1 .. base+20: p95 is the 19th (95% of 20 = 19 values at or below it)
    questions = [" ".join(["why"] * n) + "?" for n in range(1, 21)]
    data = json.dumps([{"context": "Short.", "questions": questions}]).encode()
    stats = validate_bytes(data, "p95.json", tokenizer=words).token_stats
    base = words(fewshot_text("Short."))  # the qg prompt: worked examples, then the text
    assert (stats.count, stats.min, stats.p95, stats.max) == (20, base + 1, base + 19, base + 20)


def test_no_tokenizer_means_no_token_stats():
    report = validate_file(GOOD / "coqa.json")
    assert report.token_stats is None and report.truncated == 0 and "Tokens per example" not in report.summary()


def test_token_stats_with_a_real_tokenizer_and_its_chat_template():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "user:": 1}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    plain = validate_file(GOOD / "coqa_simple.json", tokenizer=tokenizer).token_stats
    assert plain == validate_file(GOOD / "coqa_simple.json", tokenizer=words).token_stats

    tokenizer.chat_template = "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    conversations, _ = load_data(GOOD / "chat.jsonl")
    expected = sorted(sum(1 + words(m["content"]) for m in e) for e in build_examples(conversations, "chat"))
    report = validate_file(GOOD / "chat.jsonl", tokenizer=tokenizer, max_length=expected[0])
    stats = report.token_stats
    assert (stats.min, stats.max, stats.count) == (expected[0], expected[-1], 3)
    assert report.truncated == sum(count > expected[0] for count in expected) == 2


def test_tokenizer_returning_text_is_refused():
    with pytest.raises(TypeError, match="expected token ids or a count"):
        validate_file(GOOD / "coqa.json", tokenizer=lambda text: text)


# --------------------------------------------------------------------------- bulk data, split, summary, no writes


def test_generated_100_passage_coqa_validates_fast_with_matching_counts(tmp_path):
    path = tmp_path / "coqa100.json"
    written = load_make_coqa().write_coqa(path, 100)
    start = time.perf_counter()
    report = validate_file(path, task="cqg", tokenizer=words)
    elapsed = time.perf_counter() - start
    questions = sum(len(story["questions"]) for story in written["data"])
    assert report.ok and report.faults == [] and report.format == "coqa"
    assert (report.records, report.passages, report.questions, report.answers) == (100, 100, questions, questions)
    assert report.examples == questions and report.token_stats.count == questions
    counts = sorted(c for story in written["data"]
                    for c in cqg_counts(story["story"], [q["input_text"] for q in story["questions"]],
                                        [a["input_text"] for a in story["answers"]]))
    # p95 by definition: the smallest length that at least 95% of the examples do not exceed
    p95 = next(c for c in counts if sum(x <= c for x in counts) >= 0.95 * len(counts))
    stats = report.token_stats
    assert (stats.min, stats.p95, stats.max, stats.mean) == (counts[0], p95, counts[-1], round(sum(counts) / len(counts), 1))
    assert elapsed < 5, f"validation took {elapsed:.1f} s"
    for story in written["data"]:  # the generator's spans point at the story, as in real CoQA
        assert all(story["story"][a["span_start"]:a["span_end"]] == a["span_text"] for a in story["answers"])


def test_split_train_val_is_disjoint_complete_and_seeded():
    items = list(range(50))
    train, val = split_train_val(items, 0.1, seed=1)
    assert len(val) == 5 and len(train) == 45 and sorted(train + val) == items
    assert split_train_val(items, 0.1, seed=1) == (train, val)
    assert split_train_val(items, 0.1, seed=2) != (train, val)
    assert split_train_val(items[:3], 0.1) [1] != [] and len(split_train_val(items[:3], 0.1)[0]) == 2
    assert split_train_val(items[:1], 0.5) == ([0], [])
    assert split_train_val(items, 0) == (split_train_val(items, 0)[0], []) and len(split_train_val(items, 0)[0]) == 50
    with pytest.raises(ValueError, match="val_fraction"):
        split_train_val(items, 1.0)


def test_summary_reads_as_a_report():
    summary = validate_file(GOOD / "squad_v2.json", tokenizer=words).summary()
    assert summary.startswith("**squad_v2.json**: SQuAD, ready to train, 2 examples for task `qg`.")  # 1 unanswerable
    assert "| passages | 1 |" in summary and "| questions | 3 |" in summary and "sha256" in summary
    assert "**Tokens per example**: min" in summary
    rejected = validate_file(BAD / "empty.json").summary()
    assert rejected.startswith("**empty.json**: unknown format, rejected: file is empty")
    warned = validate_file(BAD / "chat_bad_role.jsonl").summary()
    assert '- `line 2, messages[1].role: expected "system", "user" or "assistant", got "bot"`' in warned


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_validation_writes_nothing(tmp_path, monkeypatch):
    scratch, work = tmp_path / "tmp", tmp_path / "cwd"
    scratch.mkdir()
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for variable in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.setenv(variable, str(scratch))
    monkeypatch.chdir(work)
    before = (tree(GOOD), tree(BAD))
    for path in sorted(GOOD.iterdir()) + sorted(BAD.iterdir()):
        validate_file(path, tokenizer=words).summary()
        try:
            load_examples(path, "chat" if "chat" in path.name else "qg")
        except DataError:
            pass
    assert (tree(GOOD), tree(BAD)) == before
    assert os.listdir(scratch) == [] and os.listdir(work) == []


def test_default_limit_admits_coqa_as_hugging_face_datasets_writes_it():
    assert MAX_BYTES == 32_000_000  # its training set is about 20 MB of JSON Lines


# --------------------------------------------------------------------------- hostile and odd inputs (issue 18)


def test_depth_scan_is_linear_on_runs_of_escaped_quotes():
    # A quote and 400,000 escaped quotes froze the old regex for minutes (quadratic, GIL held).
    text = '"' + '\\"' * 400_000
    start = time.perf_counter()
    assert json_depth(text) == 0
    assert time.perf_counter() - start < 1.0
    report = validate_bytes(text.encode(), "quotes.json")
    assert report.error.startswith("invalid JSON at line 1")


def test_a_trailing_comma_is_named():
    """JavaScript and Python allow a comma before a closing bracket, JSON does not: the error says so,
    where Python's "Expecting property name enclosed in double quotes" left a user guessing."""
    alpaca = '[\n  {"instruction": "Say hi.",\n   "output": "Hi!",\n  }\n]\n'
    report = validate_bytes(alpaca.encode(), "alpaca.json")
    assert report.error == ('invalid JSON at line 4, column 3: Expecting property name enclosed in double quotes '
                            '(a comma before "}" ends no item: remove it)')
    assert validate_bytes(b'{"data": [1, 2,]}', "x.json").error.endswith('(a comma before "]" ends no item: remove it)')
    assert "comma" not in validate_bytes(b'{"data": [1 2]}', "x.json").error.split(":")[-1]


def test_jsonl_lines_get_their_own_depth_check():
    good = json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})
    deep = "]" * 40 + "[" * 5000  # drives the total depth negative first: only a per-line check sees it
    report = validate_bytes(f"{good}\n{deep}\n{good.replace('Hi', 'Hey')}\n".encode(), "deep.jsonl")
    assert report.ok and report.conversations == 2
    assert report.faults == ["line 2: JSON is nested deeper than 32 levels"]
    nested = "[" * 3000 + "]" * 3000
    report = validate_bytes(f"{good}\n{nested}\n{good.replace('Hi', 'Hey')}\n".encode(), "nested.jsonl")
    assert report.ok and report.faults == ["line 2: JSON is nested deeper than 32 levels"]


def test_lone_surrogates_are_named_and_every_message_is_json_safe():
    data = b'[{"context": "Cats purr.", "questions": ["Who purrs?", "Why \\ud800?"]}, ' \
           b'{"context": "Dogs bark.", "questions": ["Who barks?"]}]'
    report = validate_bytes(data, "surrogate\ud800.json")
    assert report.ok and report.passages == 1
    assert report.faults == ["[0].questions[1]: holds a lone surrogate (\\ud800) at character 4: not valid Unicode text"]
    json.dumps(report.summary(), ensure_ascii=False).encode("utf-8")  # no UnicodeEncodeError anywhere
    assert "\\udc" not in report.name and "\ud800" not in report.summary()


@pytest.mark.parametrize("value, found", [
    (None, "found null"),
    ([1, 2, 3], "found a JSON list of numbers"),
    (42, 'found a number ("42")'),
    ({"data": [{"title": "x"}]}, 'found {"data": [...]} whose records are objects (the first has keys "title")'),
])
def test_unrecognised_format_names_what_was_found(value, found):
    report = validate_bytes(json.dumps(value).encode(), "odd.json")
    assert report.error == f"{UNRECOGNISED}; {found}"


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32", "utf-32-be"])
def test_utf16_and_utf32_with_a_byte_order_mark_are_read(codec):
    text = json.dumps([{"context": "Zoë smiled.", "questions": ["Who smiled?"]}], ensure_ascii=False)
    bom = {"utf-16-be": b"\xfe\xff", "utf-32-be": b"\x00\x00\xfe\xff"}.get(codec, b"")
    report = validate_bytes(bom + text.encode(codec), f"{codec}.json")
    assert report.ok and report.questions == 1, report.faults
    broken = b"\xff\xfe" + "[{}]".encode("utf-16-le")[:-1]
    assert validate_bytes(broken, "odd.json").error.startswith("file starts with a UTF-16-LE byte-order mark but is not valid")


def test_duplicate_keys_are_reported_not_silently_resolved():
    data = b'[{"context": "Cats purr.", "questions": ["Who purrs?"], "questions": ["What?"]},' \
           b' {"context": "Dogs bark.", "questions": ["Who barks?"]}]'
    report = validate_bytes(data, "dupes.json")
    assert report.ok and report.passages == 1
    assert report.faults == ['[0]: repeats the key "questions" (JSON keeps only the last value; which one was meant?)']


def test_questions_that_are_not_questions_are_flagged_and_a_file_of_them_refused():
    passages = [{"context": f"Story {i} about a cat.", "questions": ["a", "?", "Who is the cat?"][i % 3: i % 3 + 1]}
                for i in range(30)]
    report = validate_bytes(json.dumps(passages).encode(), "broken.json")
    assert not report.ok
    assert report.error.startswith("most questions are not questions: 20 of 30 have no letters or only one or two")
    assert '"a"' in report.error and "broken export" in report.error
    assert '[0].questions[0]: not a question: "a" (no letters, or one or two characters)' in report.faults
    mostly_fine = passages[:2] + [{"context": f"Other {i}.", "questions": ["What is it?"]} for i in range(10)]
    report = validate_bytes(json.dumps(mostly_fine).encode(), "some.json")
    assert report.ok and report.passages == 10 and report.skipped == 2
    assert report.skipped_questions == sum(len(p["questions"]) for p in passages[:2])
    assert validate_bytes(json.dumps([{"context": "猫.", "questions": ["谁?"]}], ensure_ascii=False).encode(), "zh.json").ok


def test_flat_layout_groups_records_of_one_context_into_a_passage():
    records = [{"context": "Cats purr.", "question": "Who purrs?", "answer": "Cats"},
               {"context": "Dogs bark.", "question": "Who barks?", "answer": "Dogs"},
               {"context": "Cats purr. ", "question": "What do cats do?", "answer": "Purr"},
               {"context": "Dogs bark.", "question": 7, "answer": "x"}]
    report = validate_bytes(json.dumps({"data": records}).encode(), "flat.json", task="cqg")
    assert report.ok and report.format == "flat-qa"
    assert (report.records, report.passages, report.questions, report.answers, report.skipped) == (4, 2, 3, 3, 1)
    assert report.skipped_questions == 1  # a record is one question
    assert report.faults == ["data[3].question: expected a string, got int"]
    assert "| passages | 2 |" in report.summary() and "| questions | 3 |" in report.summary()
    data, _ = load_data(write_json(Path(tempfile.mkdtemp()) / "flat.json", {"data": records}))
    assert [(p.source, [t.question for t in p.turns]) for p in data] == \
        [("data[0]", ["Who purrs?", "What do cats do?"]), ("data[1]", ["Who barks?"])]


def test_token_lengths_come_from_a_bounded_sample_labelled_as_an_estimate():
    passages = [{"context": f"Passage number {i} is here.", "questions": [f"What is passage {i}?"]} for i in range(5000)]
    measured = []

    def counting(text):
        measured.append(len(text))
        return len(text.split())

    report = validate_bytes(json.dumps(passages).encode(), "many.json", tokenizer=counting, max_length=10)
    assert report.ok and report.examples == 5000 and len(measured) == 2000
    assert report.token_stats.count == 2000 and report.token_stats.of == 5000
    assert "estimated from a sample of 2,000 of 5,000 examples" in report.summary()
    assert report.truncated == 5000  # every example is over 10 words: the estimate scales to the file
    huge = [{"messages": [{"role": "user", "content": "word " * 200_000}, {"role": "assistant", "content": "ok"}]}]
    measured.clear()
    report = validate_bytes(json.dumps(huge).encode(), "huge.json", tokenizer=counting)
    assert max(measured) <= 40_000 and report.token_stats.clipped == 1 and "lower bounds" in report.summary()


def test_work_per_upload_has_a_hard_cap(monkeypatch):
    from convo.data import pipeline

    monkeypatch.setattr(pipeline, "MAX_WORK", 1000)  # where the cap is checked
    records = [{"context": "c", "questions": ["Who?"]}] * 501
    report = validate_bytes(json.dumps(records).encode(), "many.json")
    assert report.error == ("file holds 1,002 records, questions and messages, over the limit of 1,000 per upload: "
                            "split it into smaller files")
    lines = "\n".join(json.dumps({"messages": []}) for _ in range(1001))
    assert validate_bytes(lines.encode(), "many.jsonl").error.startswith("file holds 1,001 records")


def test_a_file_on_this_machine_reads_past_the_upload_caps(tmp_path, monkeypatch, capsys):
    """The caps bound the work of one upload to a shared server. ``max_bytes=None`` (the command line,
    the Python API, a training job) lifts them: the official CoQA and SQuAD training files (42-49 MB,
    108-130k questions) were refused."""
    from convo.cli import data as data_cli
    from convo.data import pipeline

    monkeypatch.setattr(pipeline, "MAX_WORK", 20)
    monkeypatch.setattr(pipeline, "MAX_VALUES", 50)
    records = [{"context": f"Mia keeps {i} bees on the roof. They make honey.", "questions": ["What does Mia keep?"],
                "answers": [f"{i} bees"]} for i in range(30)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(records))
    assert validate_file(path).error.startswith("file holds 180 JSON strings, objects and lists, over the limit of 50")
    assert validate_file(path, max_bytes=1000).error == "file is 0.004 MB, over the 0.001 MB limit"
    report = validate_file(path, max_bytes=None)
    assert report.ok and (report.passages, report.questions) == (30, 30)
    examples, report = load_examples(path, None, max_bytes=None)  # the format's default task, one parse
    assert report.task == "qg" and len(examples) == 30 and examples[7][-1]["content"] == "What does Mia keep?"
    assert data_cli.main([str(path)]) == 0 and "ready to train, 30 examples" in capsys.readouterr().out
    monkeypatch.setattr(pipeline, "MAX_VALUES", 10_000)
    assert validate_file(path).error.startswith("file holds 90 records, questions and messages, over the limit of 20")


def test_one_passage_with_too_many_questions_is_skipped_by_name():
    passages = [{"context": "Long.", "questions": [f"Question {i}?" for i in range(1001)]},
                {"context": "Short.", "questions": ["Why?"]}]
    report = validate_bytes(json.dumps(passages).encode(), "long.json", task="cqg")
    assert report.ok and report.passages == 1
    assert report.faults[0] == "[0]: 1,001 questions in one passage, over the limit of 1,000"


def test_counts_are_written_with_thousands_separators(tmp_path):
    """The report read "107920 examples" in the table and "107,920" in the token line below it."""
    path = tmp_path / "many.json"
    path.write_text(json.dumps([{"context": f"Ada counted {i} sheep.", "questions": [f"What did Ada count in round {i}?"]}
                                for i in range(1_200)]))
    summary = validate_file(path).summary()
    assert "ready to train, 1,200 examples for task `qg`" in summary
    assert "| records | 1,200 |" in summary and "| questions | 1,200 |" in summary
