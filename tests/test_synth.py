"""Synthetic conversations: config import, filters, batched generation, resume, CLI, Hub push, tab handlers.

Fast tests use the tiny random model (greedy, fp32); ``slow`` ones run the bundled SmolLM2-135M-Instruct
through the real CLI / runner and check the acceptance bar. Run: ``python -m pytest tests/test_synth.py -q``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from convo import synth
from convo.cli import synth as synth_cli
from convo.engine.generation import Stop
from convo.settings import ModelSpec, Sampling

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "synth"
SHORT_GREEDY = Sampling(temperature=0.0, repetition_penalty=1.0, max_new_tokens=8)


@pytest.fixture(scope="module")
def tiny_lm(tiny_causal):
    from convo.engine import get_model

    return get_model(ModelSpec(tiny_causal, dtype="float32"))


def persona_job(**kwargs) -> synth.PersonaJob:
    personas = synth.grid([("learn", "wants to learn"), ("vent", "wants to vent")], [("shy", "speaks softly")])
    options = dict(turns=1)
    options.update(kwargs)
    return synth.PersonaJob(["Hello there.", "Why is the sky blue?"], personas, **options)


def keyword_job(words=("river", "music", "wheat"), **kwargs) -> synth.KeywordJob:
    config = synth.KeywordConfig("test", ["Talk about {word}."], list(words), ["forbidden"])
    return synth.KeywordJob(config, **kwargs)


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def subprocess_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


# --------------------------------------------------------------------------- config import


def test_keyword_config_loads():
    config = synth.load_keyword_config(DATA / "keywords.json")
    assert config.name == "everyday-words"
    assert config.model == "bundled"
    assert len(config.words) == 8 and config.words[0] == "apple"
    assert "chatgpt" in config.exclude
    assert '"apple"' in config.prompt("apple") and "{word}" not in config.prompt("apple")


@pytest.mark.parametrize("name, message", [
    ("keywords_missing_prompt_lines.json", 'keywords_missing_prompt_lines.json: missing "prompt_lines"'),
    ("keywords_no_placeholder.json", 'keywords_no_placeholder.json: "prompt_lines": no line contains "{word}"'),
    ("keywords_bad_word.json", "keywords_bad_word.json: words[1]: expected a non-empty string"),
    ("keywords_duplicate_word.json", 'keywords_duplicate_word.json: words[2]: "Apple" repeats words[0]'),
    ("keywords_invalid.json", "keywords_invalid.json: invalid JSON (line 2: Expecting value)"),
    ("does_not_exist.json", "does_not_exist.json: file not found"),
])
def test_keyword_config_errors(name, message):
    with pytest.raises(synth.ConfigError) as error:
        synth.load_keyword_config(DATA / name)
    assert str(error.value) == message


def test_keyword_config_error_names_the_file(tmp_path):
    shutil.copy(DATA / "keywords_missing_prompt_lines.json", tmp_path / "keywords.json")
    with pytest.raises(synth.ConfigError, match='^keywords.json: missing "prompt_lines"$'):
        synth.load_keyword_config(tmp_path / "keywords.json")


def test_persona_config_reads_inline_and_file_descriptions():
    config = synth.load_persona_config(DATA / "personas.json")
    assert config.llm == "bundled"
    assert [p.label for p in config.personas] == ["learn / curious", "learn / skeptical", "vent / curious",
                                                 "vent / skeptical"]
    learn_curious, _, vent_curious, vent_skeptical = config.personas
    assert learn_curious.motivation_text == "wants to understand how things work"
    assert learn_curious.disposition_text == "asks many questions and follows up on every answer"
    assert vent_curious.motivation_text == "wants to talk about a frustrating day at work"
    assert vent_skeptical.disposition_text == "doubts answers and asks for reasons"


@pytest.mark.parametrize("name, message", [
    ("personas_missing_name.json", 'personas_missing_name.json: user_profiles[1].dispositions[0]: missing "name"'),
    ("personas_missing_file.json",
     "personas_missing_file.json: user_profiles[0].path: file not found: descriptions/missing.txt"),
    ("personas_no_description.json", 'personas_no_description.json: user_profiles[0]: missing "path" or "text"'),
    ("personas_no_profiles.json", 'personas_no_profiles.json: missing "user_profiles"'),
    ("personas_bad_template.json", "personas_bad_template.json: template: unknown placeholder {dispositon} (use "
     "{motivation}, {disposition}, {seed}, {motivation_name}, {disposition_name}, {turns})"),
])
def test_persona_config_errors(name, message):
    with pytest.raises(synth.ConfigError) as error:
        synth.load_persona_config(DATA / name)
    assert str(error.value) == message


def test_uploaded_persona_config_reads_only_uploaded_files(tmp_path):
    upload = tmp_path / "upload"
    upload.mkdir()
    for name in ("personas.json", "descriptions/curious.txt", "descriptions/vent.txt"):
        shutil.copy(DATA / name, upload / Path(name).name)
    files = {p.name: p for p in upload.iterdir()}
    config = synth.load_persona_config(upload / "personas.json", files=files)
    assert config.personas[0].disposition_text == "asks many questions and follows up on every answer"
    del files["vent.txt"]
    with pytest.raises(synth.ConfigError, match=r"1 file it names was not uploaded with it: descriptions/vent.txt\. Upload them"):
        synth.load_persona_config(upload / "personas.json", files=files)
    sneaky = {"user_profiles": [{"motivation": "m", "path": "/etc/hostname", "dispositions": [{"name": "d", "text": "t"}]}]}
    with pytest.raises(synth.ConfigError, match="was not uploaded with it: /etc/hostname"):
        synth.persona_config_from_dict(sneaky, source="x.json", files={})


def test_seed_files():
    assert synth.read_seeds(DATA / "seeds.txt") == ["I want to start running but I keep giving up.", "Why is the sky blue?"]
    assert synth.read_seeds(DATA / "seeds.csv") == ["Hello, can you help me plan a trip?", "What should I cook tonight?"]
    assert synth.read_seeds(DATA / "seeds.jsonl") == ["I cannot sleep at night.", "Tell me about volcanoes.",
                                                      "My cat ignores me."]


def test_seeds_as_pandas_writes_them(tmp_path):
    """A DataFrame of seeds saved by pandas: ``to_csv``/``to_excel`` write the index first and a header
    row ("0", "1" were the seeds), ``index=False`` a header of the column's own name, ``to_json`` records
    of an "utterance" ('missing "seed"'). A seed's line break stays in the seed."""
    import pandas as pd

    seeds = ["Hi there.\nI have a question about taxes.", "Why is the sky blue?", "My cat sneezes."]
    frame = pd.DataFrame({"user_msg": seeds})
    frame.to_csv(tmp_path / "index.csv")
    frame.to_excel(tmp_path / "index.xlsx")
    frame.to_csv(tmp_path / "plain.csv", index=False)
    frame.rename(columns={"user_msg": "utterance"}).to_json(tmp_path / "records.jsonl", orient="records", lines=True)
    pd.DataFrame({"utterance": seeds, "id": [7, 8, 9]}).to_csv(tmp_path / "named.csv", index=False)
    for name in ("index.csv", "index.xlsx", "plain.csv", "records.jsonl", "named.csv"):
        assert synth.read_seeds(tmp_path / name) == seeds, name
    # a header in a person's words, a title row above the table, an id column of other names
    (tmp_path / "titled.csv").write_text("Seeds for my bot\n#,Seed text\n1,Hi there.\n2,Why?\n")
    (tmp_path / "titled_index.csv").write_text("Seeds for my bot\n,user_msg\n0,Hi there.\n1,Why?\n")
    (tmp_path / "ids.csv").write_text("id,text\ns1,Hi there.\ns2,Why?\n")
    for name in ("titled.csv", "titled_index.csv", "ids.csv"):
        assert synth.read_seeds(tmp_path / name) == ["Hi there.", "Why?"], name
    # numbers in a column of text are seeds, a header-less file's first row is one, a lowercase one too
    (tmp_path / "lower.csv").write_text("hello\nHow are you?\n")
    assert synth.read_seeds(tmp_path / "lower.csv") == ["hello", "How are you?"]
    (tmp_path / "bare.csv").write_text("Tell me a joke.\n42\nWhy?\n")
    assert synth.read_seeds(tmp_path / "bare.csv") == ["Tell me a joke.", "42", "Why?"]
    # a header-less file of labelled messages: "query" and "question" are labels there, not headers
    labelled = ["What time is it?", "hello there", "Is it going to rain today", "how is the weather", "Thanks a lot!"]
    for name, labels in (("labelled.csv", ["query", "greeting", "question", "query", "thanks"]),
                         ("unique.csv", ["query", "greeting", "question", "forecast", "thanks"])):
        (tmp_path / name).write_text("".join(f"{text},{label}\n" for text, label in zip(labelled, labels)))
        assert synth.read_seeds(tmp_path / name) == labelled, name
    # headers still found: beside a question with "?" (a form's export), under rows of notes, a one-word seed
    (tmp_path / "form.csv").write_text("Timestamp,Your question,How did you hear about us?\n"
                                       "2024/05/01 10:00:00,Why is the sky blue?,a friend\n")
    (tmp_path / "noted.csv").write_text("Exported on,2024-05-01\nid,text\na1,Hi there.\na2,Why?\n")
    (tmp_path / "words.csv").write_text("question,note\nhello,a greeting\nquestion,the word itself\n")
    assert synth.read_seeds(tmp_path / "form.csv") == ["Why is the sky blue?"]
    assert synth.read_seeds(tmp_path / "noted.csv") == ["Hi there.", "Why?"]
    assert synth.read_seeds(tmp_path / "words.csv") == ["hello", "question"]
    (tmp_path / "number.jsonl").write_text('{"seed": 1}\n')
    with pytest.raises(synth.ConfigError, match=r'^number.jsonl line 1: "seed" holds int 1, not a seed message'):
        synth.read_seeds(tmp_path / "number.jsonl")


def test_seeds_from_excels_csv(tmp_path):
    """Excel's "CSV (Comma delimited)" in many locales: ";" between cells, the Windows code page."""
    path = tmp_path / "seeds.csv"
    path.write_bytes("id;message\n1;Où est le café ? Je cherche, vraiment.\n2;Wie geht's, schön?\n".encode("cp1252"))
    assert synth.read_seeds(path) == ["Où est le café ? Je cherche, vraiment.", "Wie geht's, schön?"]


def test_conversations_seed_with_their_opening_message(tmp_path):
    """Chat JSONL, as this tab writes it, seeds new conversations with each one's first user message
    (a walkthrough's upload was refused: 'missing "seed"')."""
    chats = tmp_path / "conversations.jsonl"
    chats.write_text("\n".join(json.dumps(line) for line in [
        {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "I burn every pancake."},
                      {"role": "assistant", "content": "Which pan do you use?"}], "meta": {"word": "pancake"}},
        {"messages": [{"role": "user", "content": "Why is the sea salty?"}]}]) + "\n")
    assert synth.read_seeds(chats) == ["I burn every pancake.", "Why is the sea salty?"]
    # a message's content as OpenAI's list of parts: its text
    chats.write_text(json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "Why is rain wet?"}]}]}))
    assert synth.read_seeds(chats) == ["Why is rain wet?"]
    chats.write_text(json.dumps({"messages": [{"role": "assistant", "content": "Hi!"}]}) + "\n")
    with pytest.raises(synth.ConfigError, match='^conversations.jsonl line 1: "messages" has no user message'):
        synth.read_seeds(chats)


def test_seeds_from_an_excel_workbook(tmp_path):
    """An .xlsx of seed messages: the column a header names (under a title row, from column B), else the
    first column with a value; a number in it is a seed as Excel shows it, a damaged file is named."""
    good = Path(__file__).parent / "data" / "good"
    assert synth.read_seeds(good / "faq_sheet.xlsx") == [  # a "question" column under a title
        "When does the library open?", "How many books can I borrow?", "When did the new wing open?", "Is there wifi?"]
    import xlsxwriter

    book = xlsxwriter.Workbook(tmp_path / "seeds.xlsx")
    book.add_worksheet().write_column("B2", ["I just adopted a puppy.", "My tomatoes keep splitting.", 42])
    book.close()
    assert synth.read_seeds(tmp_path / "seeds.xlsx") == ["I just adopted a puppy.", "My tomatoes keep splitting.", "42"]
    (tmp_path / "cut.xlsx").write_bytes((tmp_path / "seeds.xlsx").read_bytes()[:300])
    with pytest.raises(synth.ConfigError, match=r"^cut.xlsx: the file is not an Excel workbook that can be read "):
        synth.read_seeds(tmp_path / "cut.xlsx")


def test_seeds_from_a_parquet_file_as_the_hub_stores_datasets(tmp_path):
    """A Hub dataset of prompts, or of chats (``messages``), downloaded as Parquet seeds as its JSON Lines
    would; a row without a seed is named by its row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "Why is the sky blue?", "id": 1},
                                         {"prompt": "How do bees talk?", "id": 2}]), path)
    assert synth.read_seeds(path) == ["Why is the sky blue?", "How do bees talk?"]
    pq.write_table(pa.Table.from_pylist([{"messages": [{"role": "system", "content": "Be brief."},
                                                       {"role": "user", "content": "I burn every pancake."},
                                                       {"role": "assistant", "content": "Which pan?"}]},
                                         {"messages": [{"role": "user", "content": "Why is the sea salty?"}]}]), path)
    assert synth.read_seeds(path) == ["I burn every pancake.", "Why is the sea salty?"]
    pq.write_table(pa.Table.from_pylist([{"prompt": "Hello?"}, {"prompt": None}]), path)
    with pytest.raises(synth.ConfigError, match=r'^train-00000-of-00001.parquet row 2: missing "seed"'):
        synth.read_seeds(path)
    path.write_bytes(path.read_bytes()[:40] + b"PAR1")
    with pytest.raises(synth.ConfigError, match=r"^train-00000-of-00001.parquet: the file is not a Parquet table "
                                                r"that can be read \(ArrowInvalid: "):
        synth.read_seeds(path)


def test_seeds_from_an_arrow_file_that_datasets_saved(tmp_path):
    """The Arrow file of a dataset saved with ``save_to_disk`` gives seeds as its Parquet would: a chat
    dataset's first user messages; a damaged one is named."""
    arrow = Path(__file__).parent / "data" / "good" / "chat.arrow"
    chats = [json.loads(line) for line in (arrow.parent / "chat.jsonl").read_text().splitlines() if line]
    firsts = [next(m["content"] for m in chat["messages"] if m["role"] == "user") for chat in chats]
    assert synth.read_seeds(arrow) == firsts
    (tmp_path / "cut.arrow").write_bytes(arrow.read_bytes()[:300])
    with pytest.raises(synth.ConfigError, match=r"^cut.arrow: the file is not an Arrow table that can be read "):
        synth.read_seeds(tmp_path / "cut.arrow")


def test_a_word_its_exclude_list_always_matches_is_refused_before_generating():
    """A kept conversation mentions its word, so a word an exclude entry matches could never be kept:
    every attempt was generated and dropped ("gave up"). A plural the entry misses still counts."""
    with pytest.raises(synth.ConfigError, match=r'^words\[1\]: "Banana" matches exclude "banan", so no '
                                                r"conversation about it could be kept"):
        synth.KeywordConfig("fruit", ["Talk about {word}."], ["apple", "Banana"], exclude=["banan"])
    with pytest.raises(synth.ConfigError, match=r'^keywords.json: words\[0\]: "C\+\+" matches exclude "c\+\+"'):
        synth.keyword_config_from_dict({"name": "x", "prompt_lines": ["{word}"], "words": ["C++"], "exclude": ["c++"]},
                                       source="keywords.json")
    assert synth.KeywordConfig("books", ["{word}"], ["library"], exclude=["library"]).words == ["library"]  # libraries
    assert synth.KeywordConfig("x", ["{word}"], ["rain"], exclude=["as an ai", r"https?://"]).words == ["rain"]


def test_seed_and_config_files_saved_as_utf16_are_read(tmp_path):
    """Windows editors and PowerShell save UTF-16 with a byte-order mark: it was "not UTF-8 text"."""
    seeds = tmp_path / "seeds.csv"
    seeds.write_bytes("message\r\n\"Où est la gare?\"\r\nWhat should I cook tonight?\r\n".encode("utf-16"))
    assert synth.read_seeds(seeds) == ["Où est la gare?", "What should I cook tonight?"]
    config = tmp_path / "personas.json"
    config.write_bytes(b"\xfe\xff" + (DATA / "personas.json").read_text(encoding="utf-8").replace(
        '"path": "descriptions/', '"path": "').encode("utf-16-be"))
    files = {"personas.json": config}
    for name in ("curious.txt", "vent.txt"):
        (tmp_path / name).write_bytes((DATA / "descriptions" / name).read_text(encoding="utf-8").encode("utf-32"))
        files[name] = tmp_path / name
    loaded = synth.load_persona_config(config, files=files)
    assert loaded.personas[0].disposition_text == "asks many questions and follows up on every answer"
    config.write_bytes(b"\xff\xfe" + b"{\x00\x22")  # a byte-order mark, "{", then half a character
    with pytest.raises(synth.ConfigError, match=r"^personas.json: starts with a UTF-16-LE byte-order mark but is "
                                                r"not valid UTF-16-LE text \(at offset 4\)$"):
        synth.load_persona_config(config, files=files)


@pytest.mark.parametrize("name, message", [
    ("seeds_missing_field.jsonl",
     'seeds_missing_field.jsonl line 2: missing "seed" (or "message", "text", "prompt", "content", "question", '
     '"utterance", "query", "instruction", "input", or chat "messages")'),
    ("seeds_invalid.jsonl", "seeds_invalid.jsonl line 2: invalid JSON"),
    ("seeds_empty.txt", "seeds_empty.txt: no seed messages"),
])
def test_seed_file_errors(name, message):
    with pytest.raises(synth.ConfigError) as error:
        synth.read_seeds(DATA / name)
    assert str(error.value) == message


def test_templates_and_jobs_validate():
    assert synth.fill_template('{"k": 1} {seed}', {"seed": "hi"}) == '{"k": 1} hi'
    with pytest.raises(synth.ConfigError, match=r"^template: unknown placeholder \{sede\}"):
        persona_job(template="Say {sede}")
    with pytest.raises(synth.ConfigError, match=r"^restyle template: it must contain \{message\}$"):
        persona_job(restyle_template="Rewrite it.")
    with pytest.raises(synth.ConfigError, match=r"^turns: expected a whole number from 1 to 20, got 0$"):
        persona_job(turns=0)
    with pytest.raises(synth.ConfigError, match="^roles: the two speakers need different names$"):
        keyword_job(roles=("A", "a"))
    assert persona_job(strategy="script").template == synth.DEFAULT_SCRIPT_TEMPLATE
    # a keyword config's prompt lines too: a {topic} or a "{word" went to the model as written
    with pytest.raises(synth.ConfigError, match=r"^prompt_lines\[1\]: unknown placeholder \{topic\} \(use \{word\}\)$"):
        synth.KeywordConfig("k", ["About {word}.", "And {topic}."], ["rain"])
    with pytest.raises(synth.ConfigError, match=r"^prompt_lines\[0\]: '\{word' opens a placeholder it does not close"):
        synth.KeywordConfig("k", ["{word and {word}}"], ["rain"])
    with pytest.raises(synth.ConfigError, match=r"^template: '\{seed' opens a placeholder it does not close"):
        persona_job(template="Start from {seed and {motivation}")
    # other braces are the prompt's own: JSON, code, a schema
    kept = synth.KeywordConfig("k", ['Reply as {"q": "{word}"} or {answer: text}, like {return x}.',
                                     "Unsure? Write {} or the format {word: definition}."], ["rain"])
    assert kept.prompt("rain") == ('Reply as {"q": "rain"} or {answer: text}, like {return x}.\n'
                                   "Unsure? Write {} or the format {word: definition}.")


def test_persona_rows_and_grid():
    personas = synth.grid([("learn", "a"), ("vent", "b")], [("shy", "c"), ("bold", "d")])
    assert [p.label for p in personas] == ["learn / shy", "learn / bold", "vent / shy", "vent / bold"]
    rows = synth.persona_rows(personas) + [["", "", "", ""]]
    assert synth.personas_from_rows(rows) == personas
    with pytest.raises(synth.ConfigError, match='^personas row 2: missing "disposition"$'):
        synth.personas_from_rows([["a", "", "b", ""], ["c", "x", "", ""]])
    with pytest.raises(synth.ConfigError, match='^personas: persona "a / b" appears twice$'):
        synth.personas_from_rows([["a", "", "b", ""], ["a", "other", "b", ""]])
    data = synth.persona_config_to_dict(personas, llm="bundled")
    assert synth.persona_config_from_dict(data).personas == personas


# --------------------------------------------------------------------------- filters

ROLES = ("STUDENT", "TEACHER")
GOOD = "STUDENT: What is a river?\nTEACHER: A river is water that flows to the sea."


@pytest.mark.parametrize("case, script, word, faults, contents", [
    ("kept", GOOD, "river", [], ["What is a river?", "A river is water that flows to the sea."]),
    ("plural counts", "STUDENT: Where are the libraries?\nTEACHER: In every town.", "library", [],
     ["Where are the libraries?", "In every town."]),
    ("missing word", GOOD, "rocket", ['does not mention "rocket"'], None),
    ("word inside another word", "STUDENT: Who is the driver?\nTEACHER: My aunt.", "river",
     ['does not mention "river"'], None),
    ("excluded substring", GOOD.replace("flows", "flows, as an AI would say,"), "river",
     ['matches exclude "as an ai"'], None),
    ("excluded regex", GOOD + "\nSTUDENT: See https://x.org for more.\nTEACHER: Thanks.", "river",
     [r'matches exclude "https?://"'], None),
    ("one turn only", "STUDENT: What is a river?", "river", ["fewer than 2 turns"], None),
    ("turns do not alternate", "STUDENT: What is a river?\nSTUDENT: Tell me.\nTEACHER: Water.", "river",
     ["turns do not alternate"], None),
    ("wrong first speaker", "TEACHER: A river flows.\nSTUDENT: Yes.", "river", ["does not start with STUDENT"], None),
    ("empty turn", "STUDENT: What is a river?\nTEACHER:\nSTUDENT: Well?\nTEACHER: Water.", "river", ["empty turn"], None),
    ("no labels", "Rivers are nice.", "river", ["no turns"], None),
    ("prose after the script is cut", GOOD + "\n\nHere is another version of the dialogue about stars.", "river", [],
     ["What is a river?", "A river is water that flows to the sea."]),
    ("another speaker ends the script", GOOD + "\nNARRATOR: The end.", "river", [],
     ["What is a river?", "A river is water that flows to the sea."]),
    ("unfinished last line dropped", GOOD + "\nSTUDENT: And the sea?\nTEACHER: The sea is where", "river", [],
     ["What is a river?", "A river is water that flows to the sea."]),
    ("forms of address stripped",
     "STUDENT: Teacher, what is a river?\nTEACHER: Well, student, a river is moving water.\n"
     "STUDENT: Thanks, teacher!\nTEACHER: Dear student, you are welcome.", "river", [],
     ["What is a river?", "Well, a river is moving water.", "Thanks!", "You are welcome."]),
    ("babble", "STUDENT: river river river river?\nTEACHER: Yes.", "river", ["repeated-token nonsense"], None),
    ("an action after the last sentence is not an unfinished line",  # (a benchmark run dropped it: no "river")
     GOOD + "\nSTUDENT: Oh dear. (laughs)\nTEACHER: Rivers, oh my!!!  So many!!   *winks*\n", "river", [],
     ["What is a river?", "A river is water that flows to the sea.", "Oh dear.", "Rivers, oh my!!! So many!!"]),
])
def test_keyword_filters(case, script, word, faults, contents):
    config = synth.KeywordConfig("t", ["{word}"], [word], ["as an ai", "https?://"])
    messages, found = synth.judge_keyword_script(script, word, synth.KeywordJob(config))
    assert found == faults, case
    if contents is not None:
        assert [m["content"] for m in messages] == contents
        assert [m["role"] for m in messages] == ["user", "assistant"] * (len(contents) // 2)


@pytest.mark.parametrize("text, expected", [
    ("Teacher, what is rain?", "What is rain?"),
    ("TEACHER: what is rain?", "What is rain?"),
    ("Hi teacher, I have a question.", "Hi, I have a question."),
    ("Yes, student, it is.", "Yes, it is."),
    ("Thank you, my teacher.", "Thank you."),
    ("The teacher said rain is water.", "The teacher said rain is water."),
    ("I am a student, teacher.", "I am a student."),
])
def test_strip_address(text, expected):
    assert synth.strip_address(text, ROLES) == expected


@pytest.mark.parametrize("text, expected", [
    # stage directions the bundled model wrote into kept keyword conversations
    ("Good idea, we have plenty in the fridge. (smiling proudly) Now don't forget to eat those!",
     "Good idea, we have plenty in the fridge. Now don't forget to eat those!"),
    ("(Laughs) Sure, I love rain!", "Sure, I love rain!"),
    ("(laughs) sure, I love rain!", "Sure, I love rain!"),
    ("I (pausing for emphasis) love rain (excitedly).", "I love rain."),
    ("Oh, that's lovely (tapping chin thoughtfully), tell me more.", "Oh, that's lovely, tell me more."),
    ("Hello there! *nods* Coffee?", "Hello there! Coffee?"),
    ("Thanks (with a big smile)!", "Thanks!"),
    ("Here you go (holds up three cups).", "Here you go."),
    ("Great! (exhilarated)", "Great!"),
    ("Well... (sarcastically) Sure.", "Well... Sure."),
    ("I see. (warmly) Tell me more. (sadly) It rained.", "I see. Tell me more. It rained."),
    ("Ask your family (family) or friends (simply).", "Ask your family (family) or friends (simply)."),
    # asides that are content stay
    ("Coffee (from the Arabic qahwa) came from Yemen.", "Coffee (from the Arabic qahwa) came from Yemen."),
    ("It grows in Brazil (including the south).", "It grows in Brazil (including the south)."),
    ("Rain is *really* wet (usually in spring), (usually).", "Rain is *really* wet (usually in spring), (usually)."),
    ("NASA (the space agency) studies rain.", "NASA (the space agency) studies rain."),
    ("**Bold** words (Beijing) stay.", "**Bold** words (Beijing) stay."),
    ("Work in short bursts (setting a timer for 25 minutes).", "Work in short bursts (setting a timer for 25 minutes)."),
    ("Boil it (adding 2 cups of water) first.", "Boil it (adding 2 cups of water) first."),
    # an aside naming a speaker is the model writing the other voice: the line ends there
    ("Music is everywhere, do you play? (TEACHER adds) So music is old!", "Music is everywhere, do you play?"),
    ("I make coffee. (USERS ENTER APP) Then what?", "I make coffee."),
])
def test_stage_directions_are_removed(text, expected):
    assert synth.strip_actions(text, ("STUDENT", "TEACHER", "USER")) == expected


def test_a_turns_line_and_a_script_lose_their_stage_directions():
    line = synth.first_line(" Rivers flow to the sea. (TEACHER continues) They do! (laughs)\nSTUDENT: x", ROLES)
    assert line == "Rivers flow to the sea."
    messages, faults = synth.parse_script("STUDENT: What is rain? (scratching head)\nTEACHER: (smiles) Water from "
                                          "clouds. *winks*", ROLES)
    assert faults == []
    assert [m["content"] for m in messages] == ["What is rain?", "Water from clouds."]
    assert synth.clean_reply("Assistant: *smiles warmly* I see, (nodding) tell me more.") == "I see, tell me more."


def test_agent_replies_are_cleaned():
    assert synth.clean_reply('User: "I keep giving up."\nAssistant: Why?') == "I keep giving up."
    assert synth.persona_faults([{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]) == \
        ["empty message"]


# --------------------------------------------------------------------------- batched generation


@pytest.mark.parametrize("make_job", [
    lambda: persona_job(turns=2), lambda: persona_job(strategy="script", turns=2),
    lambda: keyword_job(), lambda: keyword_job(strategy="script"),
], ids=["persona-agents", "persona-script", "keyword-turns", "keyword-script"])
def test_batched_generation_equals_one_by_one(tiny_lm, make_job):
    job = make_job()
    items = list(job.items())
    batched = synth.generate_items(tiny_lm, job, items, SHORT_GREEDY, batch_size=4)
    single = [synth.generate_items(tiny_lm, job, [item], SHORT_GREEDY, batch_size=1)[0] for item in items]
    assert [r.item.key for r in batched] == [item.key for item in items]
    assert [(r.messages, r.raw, r.faults) for r in batched] == [(r.messages, r.raw, r.faults) for r in single]
    assert all(r.messages for r in batched)


def test_agents_take_turns_and_keep_the_persona(tiny_lm, monkeypatch):
    from convo.synth import programs

    views = []
    real = programs.render_prompt

    def spy(lm, messages, *args, **kwargs):
        views.append([dict(m) for m in messages])
        return real(lm, messages, *args, **kwargs)

    monkeypatch.setattr(programs, "render_prompt", spy)
    job = persona_job(turns=2)
    results = synth.generate_items(tiny_lm, job, list(job.items()), SHORT_GREEDY, batch_size=4)
    assert [m["role"] for m in results[0].messages] == ["user", "assistant", "user", "assistant"]
    assert results[0].messages[0]["content"] == "Hello there."
    # 3 prompts per conversation (assistant, user agent, assistant), 4 conversations
    assert len(views) == 12
    views.clear()
    first = synth.generate_items(tiny_lm, job, list(job.items())[:1], SHORT_GREEDY, batch_size=4)[0].messages
    assert first == results[0].messages
    assistant_view, user_view, last_view = views
    assert user_view[0]["role"] == "system" and "wants to learn" in user_view[0]["content"]
    assert "speaks softly" in user_view[0]["content"] and "Hello there." in user_view[0]["content"]
    # The user agent sees its own opening as "assistant" (roles swapped) and the reply as "user".
    assert user_view[1:] == [{"role": "assistant", "content": first[0]["content"]},
                             {"role": "user", "content": first[1]["content"]}]
    assert assistant_view == [{"role": "system", "content": synth.DEFAULT_ASSISTANT_PROMPT}, first[0]]
    assert last_view == [{"role": "system", "content": synth.DEFAULT_ASSISTANT_PROMPT}] + first[:3]


def test_restyle_pass(tiny_lm):
    job = persona_job(restyle_template="Make it a post: {message}", restyle_max_chars=10)
    results = synth.generate_items(tiny_lm, job, list(job.items())[:2], SHORT_GREEDY, batch_size=2)
    for result in results:
        assert [m["role"] for m in result.restyled] == [m["role"] for m in result.messages]
        assert all(len(m["content"]) <= 10 for m in result.restyled)


# --------------------------------------------------------------------------- runs, resume, output


def run_all(lm, job, out, **kwargs) -> synth.Progress:
    progress = None
    for progress in synth.run(lm, job, out, **kwargs):
        pass
    return progress


def test_run_writes_chat_jsonl_and_rerun_skips_finished(tiny_lm, tmp_path):
    out = tmp_path / "out.jsonl"
    job = persona_job()
    progress = run_all(tiny_lm, job, out, sampling=SHORT_GREEDY, batch_size=3)
    assert (progress.total, progress.kept, progress.finished) == (4, 4, True)
    records = lines_of(out)
    assert len(records) == 4
    # (in the order they finished, which the engine's batching decides)
    [first] = [r for r in records if r["meta"]["key"] == synth.item_key("persona", "Hello there.", "learn / shy", 0)]
    meta = first["meta"]
    assert meta["seed"] == "Hello there."
    assert meta["persona"] == {"motivation": "learn", "disposition": "shy"}
    # pushed with the file: the local model by its folder's name, not this machine's path
    assert meta["model"] == f"{Path(tiny_lm.spec.name).name} (a local folder)"
    assert meta["settings"]["strategy"] == "agents" and meta["settings"]["sampling"]["temperature"] == 0.0
    assert meta["created"].endswith("+00:00")
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    before = out.read_bytes()
    again = run_all(tiny_lm, job, out, sampling=SHORT_GREEDY, batch_size=3)
    assert (again.total, again.skipped, again.kept) == (0, 4, 0)
    assert out.read_bytes() == before


def test_resume_ignores_a_partial_trailing_line(tiny_lm, tmp_path):
    out = tmp_path / "out.jsonl"
    job = persona_job()
    run_all(tiny_lm, job, out, sampling=SHORT_GREEDY)
    complete = lines_of(out)
    lines = out.read_bytes().split(b"\n")
    out.write_bytes(b"\n".join(lines[:2]) + b"\n" + lines[2][:25])  # killed while writing line 3
    assert len(synth.read_records(out)) == 2
    progress = run_all(tiny_lm, job, out, sampling=SHORT_GREEDY)
    assert (progress.skipped, progress.kept) == (2, 2)
    records = lines_of(out)
    assert sorted(r["meta"]["key"] for r in records) == sorted(r["meta"]["key"] for r in complete)
    assert [r["messages"] for r in records] == [r["messages"] for r in complete]


def test_foreign_output_file_is_refused(tiny_lm, tmp_path):
    out = tmp_path / "notes.jsonl"
    out.write_text("hello\n{}\n")
    with pytest.raises(synth.ConfigError, match="^notes.jsonl line 1: not a JSON line; choose a new output file$"):
        run_all(tiny_lm, persona_job(), out, sampling=SHORT_GREEDY)
    assert out.read_text() == "hello\n{}\n"


def test_cancel_between_steps_keeps_whole_lines(tiny_lm, tmp_path):
    out = tmp_path / "out.jsonl"
    stop = Stop()
    job = persona_job(turns=2)
    seen = []
    for progress in synth.run(tiny_lm, job, out, sampling=SHORT_GREEDY, batch_size=2, stop=stop):
        seen.append(progress.kept)
        if progress.kept >= 2:
            stop.set()
    assert progress.cancelled and not progress.finished
    assert progress.kept == 2 and len(lines_of(out)) == 2
    resumed = run_all(tiny_lm, job, out, sampling=SHORT_GREEDY, batch_size=2)
    assert (resumed.skipped, resumed.kept, resumed.finished) == (2, 2, True)


def test_keyword_run_retries_and_counts_drops(tiny_lm, tmp_path):
    out = tmp_path / "out.jsonl"
    job = keyword_job(words=("quixotrel", "zanthorpe", "vellumbrix"), max_attempts=2)
    sampled = Sampling(temperature=0.9, max_new_tokens=6, seed=3)
    progress = run_all(tiny_lm, job, out, sampling=sampled, batch_size=4)
    # A random model never writes these made-up words: every item is tried twice, then given up.
    assert (progress.kept, progress.dropped, progress.gave_up, progress.done) == (0, 6, 3, 3)
    assert progress.reasons['does not mention "quixotrel"'] == 2
    assert out.read_text() == ""
    greedy = run_all(tiny_lm, job, out, sampling=SHORT_GREEDY)
    assert (greedy.dropped, greedy.gave_up) == (3, 3)  # greedy output never changes: one attempt each


def test_forever_makes_new_samples_until_stopped(tiny_lm, tmp_path):
    out = tmp_path / "out.jsonl"
    stop = Stop()
    for progress in synth.run(tiny_lm, persona_job(), out, sampling=SHORT_GREEDY, batch_size=4, stop=stop,
                              forever=True):
        assert progress.total is None
        if progress.kept >= 10:
            stop.set()
    records = lines_of(out)
    keys = [r["meta"]["key"] for r in records]
    assert len(records) >= 10 and len(set(keys)) == len(keys)
    assert max(r["meta"]["sample"] for r in records) >= 2


def test_flat_json_shape(tiny_lm, tmp_path):
    out = tmp_path / "out.jsonl"
    run_all(tiny_lm, persona_job(restyle_template="Post: {message}"), out, sampling=SHORT_GREEDY)
    flat = json.loads(synth.write_flat_json(out, tmp_path / "flat.json").read_text())
    assert len(flat) == 4
    assert all(set(f) == {"conv", "restyled_conv", "seed", "motivation", "disposition", "word", "key"} for f in flat)
    assert [f["conv"] for f in flat] == [r["messages"] for r in lines_of(out)]  # in the file's order
    assert all([m["role"] for m in f["restyled_conv"]] == ["user", "assistant"] for f in flat)
    # every seed with every persona (the file holds them in the order they finished, which the
    # engine's batching decides)
    assert sorted((f["seed"], f["motivation"], f["disposition"]) for f in flat) == sorted(
        (seed, motivation, "shy") for seed in ("Hello there.", "Why is the sky blue?") for motivation in ("learn", "vent"))


def test_progress_summary_and_eta():
    progress = synth.Progress(total=10, kept=3, dropped=2, gave_up=1, elapsed=40.0)
    assert progress.eta == pytest.approx(60.0)
    assert progress.summary() == "kept 3 · dropped 2 · gave up 1 · 4/10 · ETA 1:00"
    assert synth.format_seconds(3700) == "1:01:40"


# --------------------------------------------------------------------------- Hub


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    from hub_server import serve_fake_hub

    hub = serve_fake_hub(monkeypatch, tmp_path, {"hf_alice_token": "alice"})
    yield hub
    hub.stop()


def test_card_model_names_a_relative_folder_as_a_folder(tmp_path, monkeypatch):
    """A relative folder ("qg-1", "out/qg-1") is also a valid Hub id: the loaders look on disk first, and
    so does the dataset's record of the model (it named "out/qg-1" as user "out"'s repo)."""
    from types import SimpleNamespace

    from convo.settings import ModelSpec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "qg-1").mkdir(parents=True)
    named = synth.card_model(SimpleNamespace(spec=ModelSpec("bundled", adapter="out/qg-1")))
    assert named == "HuggingFaceTB/SmolLM2-135M-Instruct + qg-1 (a local folder)"
    assert synth.card_model(SimpleNamespace(spec=ModelSpec(".", adapter="alice/qg"))) == \
        f"{tmp_path.name} (a local folder) + alice/qg"  # no such folder here: a Hub id


def test_push_dataset_reaches_the_hub(fake_hub, tiny_lm, tmp_path):
    out = tmp_path / "conversations.jsonl"
    job = persona_job()
    run_all(tiny_lm, job, out, sampling=SHORT_GREEDY)
    config = synth.dataset_config(job, tiny_lm.spec.label, SHORT_GREEDY)
    url = synth.push_to_hub(out, "alice/curious-synth", token="hf_alice_token", config=config, private=True)
    assert url.endswith("alice/curious-synth")
    files = fake_hub.files("alice/curious-synth", "dataset")
    assert files["conversations.jsonl"] == out.read_bytes()
    card = files["README.md"].decode()
    assert '"strategy": "agents"' in card and '"generator": "convo synth"' in card
    assert "| conversations | 4 |" in card.replace("`", "")
    assert "hf_alice_token" not in card
    assert fake_hub.repo("alice/curious-synth", "dataset").private


def test_push_with_a_bad_token_is_one_clear_error(fake_hub, tiny_lm, tmp_path):
    from convo.hub import HubError

    out = tmp_path / "conversations.jsonl"
    run_all(tiny_lm, persona_job(), out, sampling=SHORT_GREEDY)
    with pytest.raises(HubError) as error:
        synth.push_to_hub(out, "alice/x", token="hf_wrong", config={})
    assert "\n" not in str(error.value) and "hf_wrong" not in str(error.value)


# --------------------------------------------------------------------------- CLI


def synth_command(out: Path, model: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "convo", "synth", "--personas", str(DATA / "personas.json"),
            "--seeds", str(DATA / "seeds.txt"), "--out", str(out), "--model", model, "--dtype", "float32",
            "--turns", "1", "--max-new-tokens", "8", "--temperature", "0", *extra]


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return path.read_bytes().count(b"\n")
        if proc.poll() is not None:
            raise AssertionError(f"exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"no {count} lines after {timeout} s")


def test_cli_killed_midway_then_rerun_finishes_without_duplicates(tiny_causal, tmp_path):
    out, reference = tmp_path / "out.jsonl", tmp_path / "reference.jsonl"
    args = ["--samples", "8", "--batch-size", "1"]  # 2 seeds x 4 personas x 8 samples = 64 items
    proc = subprocess.Popen(synth_command(out, tiny_causal, *args), env=subprocess_env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_lines(out, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    killed_at = len(synth.read_records(out))
    assert 2 <= killed_at < 64
    with open(out, "ab") as fh:  # as if the kill had landed in the middle of a write
        fh.write(b'{"messages": [{"role": "user", "con')
    finished = subprocess.run(synth_command(out, tiny_causal, *args), env=subprocess_env(), cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"{killed_at} already done" in finished.stderr
    # The same job run in-process, uninterrupted, is the reference.
    from convo.engine import get_model

    personas = synth.load_persona_config(DATA / "personas.json").personas
    job = synth.PersonaJob(synth.read_seeds(DATA / "seeds.txt"), personas, turns=1, samples=8)
    run_all(get_model(ModelSpec(tiny_causal, dtype="float32")), job, reference,
            sampling=synth.default_sampling(job, 8, temperature=0.0), batch_size=1)
    records, expected = lines_of(out), lines_of(reference)
    keys = [r["meta"]["key"] for r in records]
    assert len(keys) == len(set(keys)) == 64
    by_key = {r["meta"]["key"]: r["messages"] for r in expected}
    assert {r["meta"]["key"]: r["messages"] for r in records} == by_key


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_forever_stops_cleanly_on_a_signal(tiny_causal, tmp_path, sig):
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(synth_command(out, tiny_causal, "--forever", "--batch-size", "2"), env=subprocess_env(),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_lines(out, 12, proc)  # more than one round of the 8 (seed, persona) items
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert out.read_bytes().endswith(b"\n")
    records = lines_of(out)
    keys = [r["meta"]["key"] for r in records]
    assert len(records) >= 12 and len(keys) == len(set(keys))
    assert "interrupted: finished lines are saved" in stderr.decode()
    assert f"{out}: {len(records)} new conversations" in stdout.decode()


def test_cli_errors_are_one_line(capsys):
    code = synth_cli.main(["--personas", str(DATA / "personas.json"), "--out", "x.jsonl"])
    assert code == 2
    assert capsys.readouterr().err == ("error: persona mode needs --seeds (a .txt, .csv, .xlsx, .jsonl, .json, .parquet "
                                       "or .arrow file)\n")
    # an output folder, before the model loads (IsADirectoryError's traceback came after it)
    code = synth_cli.main(["--config", str(DATA / "keywords.json"), "--out", str(DATA)])
    assert code == 2 and capsys.readouterr().err.startswith(f"error: --out: {DATA} is a folder: give a file in it")
    code = synth_cli.main(["--config", str(DATA / "keywords_missing_prompt_lines.json"), "--out", "x.jsonl"])
    assert code == 2
    assert capsys.readouterr().err == 'error: keywords_missing_prompt_lines.json: missing "prompt_lines"\n'
    code = synth_cli.main(["--config", str(DATA / "keywords.json"), "--personas", str(DATA / "personas.json"),
                       "--out", "x.jsonl"])
    assert code == 2 and "give either --config" in capsys.readouterr().err


def test_register_cli_adds_synth():
    import argparse

    parser = argparse.ArgumentParser()
    synth_cli.register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", "--config", "k.json", "--out", "o.jsonl", "--forever", "--n-per-word", "3",
                              "--batch-size", "16", "--max-new-tokens", "64", "--model", "bundled"])
    assert (args.func, args.forever, args.n_per_word, args.batch_size, args.max_new_tokens) == (synth_cli.cli, True, 3, 16, 64)


# --------------------------------------------------------------------------- tab handlers


@pytest.fixture
def ui():
    from convo.ui import synth as ui_synth

    return ui_synth


def form_args(ui, **changes):
    from dataclasses import replace

    return replace(ui.FormValues(personas=[["learn", "wants to learn", "shy", "speaks softly"]]), **changes)


def test_form_fields_line_up(ui):
    from dataclasses import fields

    assert [f.name for f in fields(ui.Form)] == [f.name for f in fields(ui.FormValues)]


def test_job_from_form(ui):
    job = ui.job_from(ui.FormValues(personas=ui.DEFAULT_PERSONA_ROWS, turns=2.0, samples=2))
    assert isinstance(job, synth.PersonaJob) and len(job.personas) == 4 and job.turns == 2 and job.samples == 2
    assert job.seeds == ui.DEFAULT_SEEDS.splitlines()
    keyword = ui.job_from(ui.FormValues(mode="keyword", words="apple\n\nriver\n", role_user="PUPIL"))
    assert keyword.config.words == ["apple", "river"] and keyword.roles == ("PUPIL", "TEACHER")
    with pytest.raises(synth.ConfigError, match='^keyword config: "prompt_lines": no line contains "{word}"$'):
        ui.job_from(ui.FormValues(mode="keyword", prompt_lines="Talk."))
    with pytest.raises(synth.ConfigError, match="^turns: expected a whole number, got 2.5$"):
        ui.job_from(ui.FormValues(personas=ui.DEFAULT_PERSONA_ROWS, turns=2.5))


def test_keyword_turns_stop_at_the_end_of_a_line(ui):
    """A keyword ``turns`` step keeps only the model's first line, so its sampling stops at the newline, also
    as the tab builds it (the CLI calls default_sampling alike) and in the dataset card; other strategies not."""
    form = ui.FormValues(mode="keyword", words="rain", temperature=0.0, max_new_tokens=6)
    turns = ui.job_from(form)
    assert turns.strategy == "turns" and synth.default_sampling(turns).stop == ("\n",)
    assert ui.sampling_from(turns, form).stop == ("\n",)
    assert synth.dataset_config(turns, "m", ui.sampling_from(turns, form))["sampling"]["stop"] == ["\n"]
    assert synth.default_sampling(keyword_job(strategy="script")).stop == ()
    assert synth.default_sampling(persona_job()).stop == ()


def test_import_handlers(ui, tmp_path):
    name, lines, words, exclude, note = ui.import_keyword_config(str(DATA / "keywords.json"))
    assert name == "everyday-words" and words.splitlines()[-1] == "library" and "chatgpt" in exclude
    assert "model bar above decides" in note
    *_, note = ui.import_keyword_config(str(DATA / "keywords_missing_prompt_lines.json"))
    assert note == '**Error:** keywords_missing_prompt_lines.json: missing "prompt_lines"'
    files = [str(DATA / "personas.json"), str(DATA / "descriptions" / "curious.txt"),
             str(DATA / "descriptions" / "vent.txt")]
    rows, template, restyle_template, _, note = ui.import_persona_config(files, "T {seed}", "R {message}")
    assert len(rows) == 4 and rows[0][3] == "asks many questions and follows up on every answer"
    assert (template, restyle_template) == ("T {seed}", "R {message}")
    *_, note = ui.import_persona_config(files[:1], "T", "R")
    assert note.startswith("**Error:** personas.json: 2 files it names were not uploaded with it: "
                           "descriptions/curious.txt"), note
    assert ui.load_seed_file(str(DATA / "seeds.csv"), "old")[0].splitlines() == ["Hello, can you help me plan a trip?",
                                                                                "What should I cook tonight?"]
    assert ui.make_grid([["a", "x"], ["b", ""]], [["c", "y"]]) == [["a", "x", "c", "y"], ["b", "", "c", "y"]]
    template, _ = ui.switch_strategy("script", synth.DEFAULT_AGENT_TEMPLATE)
    assert template == synth.DEFAULT_SCRIPT_TEMPLATE
    assert ui.switch_strategy("agents", "my own {seed}")[0] == "my own {seed}"


def test_preview_and_run_handlers(ui, tiny_causal, tmp_path):
    args = form_args(ui, temperature=0.0, max_new_tokens=6, turns=1)
    markdown, rows, bar, status = ui.preview(tiny_causal, None, "auto", args)
    assert markdown.startswith("**1. learn / shy** (kept)") and len(rows) == 2  # 2 seeds x 1 persona
    kept = markdown.count("(kept)")
    assert bar == "" and status.startswith(f"Preview: {kept} of the first 2 kept. Nothing was written")
    updates = list(ui.run(tiny_causal, None, "auto", None, {}, args))
    bar, status, table, download, out_path, command, config = updates[-1]
    assert status.startswith("Done: 2 new conversations (0 already there)")
    assert 'data-state="finished"' in bar and 'data-kept="2"' in bar
    assert download == out_path and len(lines_of(Path(out_path))) == 2
    assert table[0][1] == "yes" and len(table) == 2
    assert command.startswith("python -m convo synth --personas ") and "--temperature 0.0" in command
    assert config["mode"] == "persona" and config["sampling"]["max_new_tokens"] == 6
    # the config goes into the pushed card: the local model by its folder's name, not this machine's path
    # (the command, which runs here, keeps the path)
    assert config["model"] == f"{Path(tiny_causal).name} (a local folder)" and str(tiny_causal) in command
    replay = json.loads((Path(out_path).parent / "personas.json").read_text())
    assert synth.persona_config_from_dict(replay).personas[0].label == "learn / shy"
    again = list(ui.run(tiny_causal, None, "auto", out_path, config, args))[-1]
    assert again[1].startswith("Done: 0 new conversations (2 already there)")
    # nothing new: the table shows the file's conversations (it emptied), the bar is full (a grey "0/0")
    assert again[2] == [[2, "yes", "learn / shy", 2, table[0][4], ""], [1, "yes", "learn / shy", 2, table[1][4], ""]]
    assert '<progress value="1" max="1"' in again[0]
    keyword_args = form_args(ui, mode="keyword", words="river", temperature=0.0, max_new_tokens=4)
    switched = list(ui.run(tiny_causal, None, "auto", out_path, config, keyword_args))[-1]
    assert switched[4] != out_path  # another mode writes another file
    # a batch size that is no whole number is named in the note, by both buttons (Preview raised it before)
    bad = form_args(ui, temperature=0.0, max_new_tokens=6, turns=1, batch_size=2.5)
    failed = ui.preview(tiny_causal, None, "auto", bad)
    assert failed[0] == "**Error:** batch size: expected a whole number, got 2.5"
    assert failed[3] == "Preview failed (below): nothing was written."  # not the run's "Done: ..." of before
    assert list(ui.run(tiny_causal, None, "auto", None, {}, bad))[-1][1] == \
        "**Error:** batch size: expected a whole number, got 2.5"
    file_update, tabs = ui.send_to_finetune(out_path)
    assert file_update["value"] == out_path and tabs.selected == "finetune"
    flat = json.loads(Path(ui.flat_json(out_path)).read_text())
    assert len(flat) == 2 and "conv" in flat[0]


def test_run_handler_reports_bad_input(ui, tiny_causal):
    *_, last = ui.run(tiny_causal, None, "auto", None, {}, form_args(ui, personas=[["learn", "", "", ""]]))
    assert last[1] == '**Error:** personas row 1: missing "disposition"'
    assert ui.cancel(None) == "Nothing is running."
    ui._running["local"] = Stop()  # a run of this session is going
    try:
        *_, last = ui.run(tiny_causal, None, "auto", None, {}, form_args(ui))
        assert last[1] == "A run is already going: cancel it first."
        assert ui.cancel(None) != "Nothing is running."  # the run itself then says "Cancelled: ..."
        assert ui._running["local"].is_set()
    finally:
        ui._running.pop("local", None)


def test_push_handler(ui, fake_hub, tiny_lm, tmp_path):
    out = tmp_path / "conversations.jsonl"
    job = persona_job()
    run_all(tiny_lm, job, out, sampling=SHORT_GREEDY)
    config = synth.dataset_config(job, "tiny", SHORT_GREEDY)
    assert ui.push(str(out), "alice/ui-push", True, "", config)[0].startswith("**Error:** Sign in")
    status, token_box = ui.push(str(out), "alice/ui-push", True, " hf_alice_token ", config)
    assert status.startswith("Pushed: [") and "alice/ui-push" in status
    assert token_box == ""  # the token box is cleared after use
    assert "conversations.jsonl" in fake_hub.files("alice/ui-push", "dataset")


def test_tab_renders_with_stable_ids(ui):
    import gradio as gr

    from convo.ui.common import Shared, model_bar

    with gr.Blocks() as demo:
        model, adapter, quantize, _, status = model_bar()
        with gr.Tabs() as tabs:
            shared = Shared(tabs=tabs, model=model, adapter=adapter, quantize=quantize, model_status=status)
            with gr.Tab("Fine-tune", id="finetune"):
                shared.finetune_file = gr.File()
            with gr.Tab("Synthetic", id="synth"):
                ui.render(shared)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"synth-preview", "synth-run", "synth-cancel", "synth-output-table", "synth-progress",
            "synth-download", "synth-push", "synth-send-finetune"} <= ids
    api_names = {d.api_name for d in demo.fns.values() if getattr(d, "api_name", None)}
    assert {"synth_preview", "synth_run", "synth_push"} <= api_names


# --------------------------------------------------------------------------- acceptance (bundled model)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_keyword_config_with_bundled_model_from_the_cli(tmp_path):
    out = tmp_path / "words.jsonl"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "convo", "synth", "--config", str(DATA / "keywords.json"),
                             "--out", str(out), "--seed", "1", "--max-attempts", "3"],
                            env=subprocess_env(), cwd=ROOT, capture_output=True, text=True, timeout=400)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    config = synth.load_keyword_config(DATA / "keywords.json")
    exclude = synth.compile_exclude(config.exclude)
    records = lines_of(out)
    words = [r["meta"]["word"] for r in records]
    assert len(set(words)) == len(words) >= 6, (words, result.stderr[-3000:])
    for record in records:
        text = "\n".join(m["content"] for m in record["messages"])
        assert synth.mentions(text, record["meta"]["word"]), text
        assert not any(pattern.search(text) for _, pattern in exclude), text
        roles = [m["role"] for m in record["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and len(roles) >= 2
    print(f"keyword CLI: {len(records)}/8 words kept in {took:.0f} s")


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_persona_grid_with_bundled_model(tmp_path):
    from convo.engine import get_model

    lm = get_model("bundled")
    personas = synth.grid([("learn", "wants to understand how things work"), ("vent", "had a frustrating day")],
                          [("curious", "asks many follow-up questions"), ("terse", "writes very short messages")])
    job = synth.PersonaJob(["I want to start running but I keep giving up.", "Why is the sky blue?"], personas,
                           turns=2)
    out = tmp_path / "personas.jsonl"
    started = time.monotonic()
    progress = run_all(lm, job, out, sampling=synth.default_sampling(job, 48, seed=1), batch_size=8)
    took = time.monotonic() - started
    records = lines_of(out)
    assert progress.finished and len(records) == 8, progress.summary()
    assert len({r["meta"]["key"] for r in records}) == 8
    combos = {(r["meta"]["seed"], r["meta"]["persona"]["motivation"], r["meta"]["persona"]["disposition"])
              for r in records}
    assert len(combos) == 8
    for record in records:
        assert [m["role"] for m in record["messages"]] == ["user", "assistant", "user", "assistant"]
        assert all(m["content"].strip() for m in record["messages"])
        meta = record["meta"]
        assert meta["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["settings"]["turns"] == 2 and meta["created"]
    print(f"persona grid: 8 conversations in {took:.0f} s")


def test_persona_setup_missing_files_listed_at_once_then_imported_from_a_zip_with_its_templates(ui, tmp_path):
    """Issue 19: another tool's setup (3 motivations x 2 dispositions, 9 description files) uploaded
    alone lists all 9 in one message; with them in a .zip beside it, one persona per pair is imported
    and the uploaded generation/restyle templates are used (and said so); "{}" templates are refused."""
    import zipfile

    profiles = [{"motivation": f"m{i}", "path": f"desc/m{i}.txt",
                 "dispositions": [{"name": f"d{j}", "path": f"desc/m{i}-d{j}.txt"} for j in range(2)]}
                for i in range(3)]
    config = tmp_path / "setup.json"
    config.write_text(json.dumps({"llm": "other/model", "user_profiles": profiles}))
    names = [p["path"] for p in profiles] + [d["path"] for p in profiles for d in p["dispositions"]]
    assert len(names) == 9
    rows, *_, note = ui.import_persona_config([str(config)], "T {seed}", "R {message}")
    assert note.count("**Error:**") == 1 and "9 files it names were not uploaded" in note
    assert all(name in note for name in names), note

    bundle = tmp_path / "descriptions.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for name in names:
            archive.writestr(name, f"description of {Path(name).stem}")
        archive.writestr("prompts/generation_template.txt", "Be {disposition}, want {motivation}. Say: {seed}")
        archive.writestr("prompts/restyle_prompt.txt", "Rewrite casually: {message}")
    rows, template, restyle_template, restyle, note = ui.import_persona_config([str(config), str(bundle)], "T {seed}",
                                                                               "R {message}")
    assert sorted((r[0], r[2]) for r in rows) == [(f"m{i}", f"d{j}") for i in range(3) for j in range(2)]
    assert rows[0][1] == "description of m0" and rows[0][3] == "description of m0-d0"
    assert template == "Be {disposition}, want {motivation}. Say: {seed}"
    assert restyle_template == "Rewrite casually: {message}" and restyle["value"] is True
    assert "generation template from **generation_template.txt**" in note
    assert "restyle template from **restyle_prompt.txt**" in note

    only_descriptions = tmp_path / "only.zip"
    with zipfile.ZipFile(only_descriptions, "w") as archive:
        for name in names:
            archive.writestr(name, "text")
    positional = tmp_path / "generation_template.txt"
    positional.write_text("You are {} and {}. Start with: {}")
    *_, note = ui.import_persona_config([str(config), str(only_descriptions), str(positional)], "T {seed}", "R {message}")
    assert note.startswith("**Error:**") and "positional placeholders" in note and "{motivation}" in note, note


def test_keyword_lines_are_sampled_until_one_names_the_word(tiny_lm):
    """While sampling, each line of a keyword script is drawn from several candidates in the same
    step until the script names its word (the most common drop was a conversation that never does);
    then one line a step. Greedy runs draw one (the candidates would be the same text)."""
    from convo.synth import programs

    job = synth.KeywordJob(synth.KeywordConfig("k", ["Talk about {word}."], ["rain"], ["sorry"]), line_candidates=3)
    item = next(job.items())
    program = programs.program_for(tiny_lm, job, Sampling(temperature=0.7))(item)
    first = next(program)
    assert len(first) == 3 and len(set(first)) == 1 and first[0].endswith("STUDENT:")
    assert all(prompt.favour == ("rain",) for prompt in first)  # steered towards the word until it is named
    # none names the word: the first clean one is kept, and the next line gets candidates again
    second = program.send(["I am sorry.", "Hello there.", "Good morning."])
    assert len(second) == 3 and second[0].endswith("STUDENT: Hello there.\nTEACHER:")
    third = program.send(["Nice day.", "Is it going to rain today?", "Rain is wet."])
    assert len(third) == 1 and "TEACHER: Is it going to rain today?\nSTUDENT:" in third[0]
    assert not getattr(third[0], "favour", ())
    again = program.send([""])  # an empty line (it began with a newline, its stop) is asked for again
    assert again == third
    fourth = program.send(["Why?"])
    assert len(fourth) == 1
    with pytest.raises(StopIteration) as ended:
        program.send(["Because clouds are heavy."])
    result = ended.value.value
    assert [m["content"] for m in result.messages] == ["Hello there.", "Is it going to rain today?", "Why?",
                                                       "Because clouds are heavy."]
    assert result.kept
    greedy = programs.program_for(tiny_lm, job, SHORT_GREEDY)(item)
    assert len(next(greedy)) == 1
    assert job.to_config()["line_candidates"] == 3
    assert len(next(programs.program_for(tiny_lm, keyword_job(), Sampling(temperature=0.7))(item))) == 1  # default
    with pytest.raises(synth.ConfigError, match="line_candidates"):
        synth.KeywordJob(job.config, line_candidates=0)


def test_keyword_lines_that_babble_or_leave_an_unfinished_ending_are_sampled_again(tiny_lm):
    """A babbling line ("No, no, no...") is sampled again, as is a last line the judge would trim
    (unfinished: cut by the token limit), which took the question before it and the word with them:
    with twice the token budget. A line that failed all its tries dooms the script, and its last line
    is then taken as it comes."""
    from convo.synth import programs

    job = synth.KeywordJob(synth.KeywordConfig("k", ["Talk about {word}."], ["rain"], ["sorry"]), turns=2)
    item = next(job.items())
    program = programs.program_for(tiny_lm, job, Sampling(temperature=0.7))(item)
    first = next(program)
    assert program.send(["No, no, no, not today."]) == first  # babble: the same line again
    second = program.send(["Hello there."])
    assert second[0].endswith("STUDENT: Hello there.\nTEACHER:")
    third = program.send(["Rain is on the way."])
    last = program.send(["Will it rain all day?"])
    assert last[0].endswith("STUDENT: Will it rain all day?\nTEACHER:")
    again = program.send(["The clouds over the hills are heavy and"])  # unfinished: trimmed, so again,
    assert again == last and again[0].tokens == 2 * Sampling(temperature=0.7).max_new_tokens  # with more room
    assert last[0].tokens is None
    with pytest.raises(StopIteration) as ended:
        program.send(["Yes, until the evening."])
    result = ended.value.value
    assert result.kept and [m["content"] for m in result.messages] == [
        "Hello there.", "Rain is on the way.", "Will it rain all day?", "Yes, until the evening."]
    assert third[0].endswith("TEACHER: Rain is on the way.\nSTUDENT:")

    program = programs.program_for(tiny_lm, job, Sampling(temperature=0.7))(item)
    next(program)
    for _ in range(3):  # every try babbles: the script is doomed
        asked = program.send(["No, no, no, not today."])
    for line in ("Rain is here.", "Why?"):
        asked = program.send([line])
    with pytest.raises(StopIteration) as ended:  # the unfinished last line is not asked for again
        program.send(["Because the clouds"])
    assert ended.value.value.faults == ["repeated-token nonsense"]


def test_keyword_lines_that_would_drop_the_conversation_are_sampled_again(tiny_lm):
    """A line matching an exclude entry is sampled again instead of the whole conversation being
    redone, and so is the last line while the script still misses its word, steered harder each time;
    after ``tries`` the conversation goes on as before (and is judged as before)."""
    from convo.engine.programs import STEER
    from convo.synth import programs

    job = synth.KeywordJob(synth.KeywordConfig("k", ["Talk about {word}."], ["rain"], ["sorry"]), turns=1)
    item = next(job.items())
    program = programs.program_for(tiny_lm, job, Sampling(temperature=0.7))(item)
    first = next(program)
    assert first[0].bias == STEER
    assert program.send(["I am so sorry."]) == first  # excluded: the same line again
    last = program.send(["Hello there."])  # clean, no word yet: kept (a later line may name it)
    assert last[0].endswith("STUDENT: Hello there.\nTEACHER:") and last[0].bias == STEER
    harder = program.send(["Good morning."])  # the last line, still no word: again, steered harder
    assert harder == last and harder[0].bias == 2 * STEER
    with pytest.raises(StopIteration) as ended:
        program.send(["Rain is on the way."])
    assert [m["content"] for m in ended.value.value.messages] == ["Hello there.", "Rain is on the way."]
    assert ended.value.value.kept

    program = programs.program_for(tiny_lm, job, Sampling(temperature=0.7))(item)
    next(program)
    asked = [program.send(["Hello there."]), program.send(["Good morning."]), program.send(["Good evening."])]
    assert [prompts[0].bias for prompts in asked] == [STEER, 2 * STEER, 3 * STEER]  # tries: 3
    with pytest.raises(StopIteration) as ended:
        program.send(["Good night."])
    assert not ended.value.value.kept and ended.value.value.faults == ['does not mention "rain"']
