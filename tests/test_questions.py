"""Tests for question generation (convo/questions/), its tab handlers and its CLI.

Run: ``python -m pytest tests/test_questions.py -q`` (add ``-m "not slow"`` to skip the bundled model).
Tiny random models stand in for real ones everywhere but the ``slow`` acceptance test; they cannot
write real questions, so those runs exercise chunking, spans, filters and the rule-based fallback.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from convo import filters  # noqa: E402
from convo import questions as qg  # noqa: E402
from convo.cli import questions as qcli  # noqa: E402
from convo.data import QG_SYSTEM, Turn, cqg_prompt, qg_prompt  # noqa: E402
from convo.engine.generation import render_prompt  # noqa: E402
from convo.settings import ModelSpec, Sampling  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PASSAGES = sorted((Path(__file__).parent / "data" / "passages").glob("*.txt"))
PASSAGE = {path.stem: path for path in PASSAGES}
BAD = Path(__file__).parent / "data" / "passages" / "bad"
SEEDED = qg.QuestionSettings(sampling=Sampling(temperature=0.7, top_p=0.9, max_new_tokens=32,
                                               repetition_penalty=1.1, seed=0))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def causal_lm(tiny_causal):
    from convo.engine import get_model

    return get_model(ModelSpec(tiny_causal, dtype="float32"))


@pytest.fixture(scope="module")
def seq2seq_lm(tiny_seq2seq):
    from convo.engine import get_model

    return get_model(ModelSpec(tiny_seq2seq, dtype="float32"))


@pytest.fixture(autouse=True)
def _downloads_in_tmp(tmp_path, monkeypatch):
    """The tab writes its CSV/JSON downloads with tempfile: keep them in this test's folder."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))


def long_passage(words: int = 20_000) -> str:
    """A deterministic encyclopedic-looking text of about ``words`` words, every paragraph about a
    different (invented) town, founder and year, so rule-based questions differ between chunks."""
    first = ["Anna", "Boris", "Clara", "Dmitri", "Elena", "Felix", "Greta", "Hugo", "Ilse", "Jonas", "Katya", "Lukas"]
    last = ["Marek", "Novak", "Orlov", "Petrov", "Quist", "Rainer", "Sorel", "Tamm", "Ulrich", "Vance", "Weller"]
    stems = ["Bel", "Cor", "Dun", "Fal", "Gor", "Hal", "Kel", "Lor", "Mar", "Nor", "Pel", "Ros", "Tor", "Vel"]
    ends = ["avik", "brook", "dale", "ford", "grad", "heim", "mouth", "stead", "ton", "wick"]
    paragraphs, count, i = [], 0, 0
    while count < words:
        town = stems[i % len(stems)] + ends[(i // len(stems)) % len(ends)]
        river = stems[(i * 7 + 3) % len(stems)] + "a"
        person = f"{first[i % len(first)]} {last[(i // 3) % len(last)]}"
        year = 1100 + (i * 37) % 800
        paragraph = (f"{town} is a small market town on the river {river}. It was founded in {year} by the "
                     f"farmer {person}, who built a stone bridge and a water mill there. The town grew slowly "
                     f"because the river flooded the fields every spring. Today {town} has about {1000 + i * 13} "
                     f"inhabitants, a weekly market and a museum of old farm tools. Visitors come in summer "
                     f"to walk along the river and to see the mill, which still grinds wheat into flour.")
        paragraphs.append(paragraph)
        count += len(paragraph.split())
        i += 1
    return "\n\n".join(paragraphs)


def rule_subject(question: str) -> str:
    """What a rule-based question is about: 'What happened in 1734?' -> '1734'."""
    for prefix in ("What happened in ", "What does the text say about ", "What is ", "What are "):
        if question.startswith(prefix):
            return question[len(prefix):].rstrip("?")
    raise AssertionError(f"not a rule question: {question}")


def assert_spans_inside(questions, passage: str) -> None:
    for q in questions:
        start, end = q.span
        assert 0 <= start < end <= len(passage), (q.text, q.span)
        assert passage[start:end].strip() == passage[start:end], "spans are trimmed"


def pairwise_distinct(texts) -> bool:
    texts = list(texts)
    return not any(filters.near_duplicate(a, b) or qg.same_question(a, b)
                   for i, a in enumerate(texts) for b in texts[i + 1:])


# --------------------------------------------------------------------------- text units


@pytest.mark.parametrize("text, expected", [
    ("One. Two is here! Three?", ["One.", "Two is here!", "Three?"]),
    ("Dr. Smith met J. R. Jones. They talked.", ["Dr. Smith met J. R. Jones.", "They talked."]),
    ("It cost 3.5 euros. Fine", ["It cost 3.5 euros.", "Fine"]),
    ("# Title\nFirst line of text. Second.", ["# Title", "First line of text.", "Second."]),
    ("para one\n\npara two", ["para one", "para two"]),
    ("He said \"Stop.\" Then left.", ["He said \"Stop.\"", "Then left."]),
    ("  \n  ", []),
    # scripts beyond English: Chinese and Japanese full stops need no space after them, Arabic and Hindi
    # have no capitals, and German capitals are not ASCII (each was one sentence)
    ("长城很长。它建于古代！为什么？", ["长城很长。", "它建于古代！", "为什么？"]),
    ("富士山は高い。「美しい」と彼は言った。", ["富士山は高い。", "「美しい」と彼は言った。"]),
    ("النحل يصنع العسل. هل تعرف كيف؟ إنه يجمع الرحيق.", ["النحل يصنع العسل.", "هل تعرف كيف؟", "إنه يجمع الرحيق."]),
    ("मधुमक्खी शहद बनाती है। वह फूलों से रस लेती है।", ["मधुमक्खी शहद बनाती है।", "वह फूलों से रस लेती है।"]),
    ("Der Zug kam spät. Österreich lag vor uns.", ["Der Zug kam spät.", "Österreich lag vor uns."]),
])
def test_split_sentences(text, expected):
    assert [text[s:e] for s, e in qg.split_sentences(text)] == expected


@pytest.mark.parametrize("spans, lengths, budget, overlap, expected", [
    ([(0, 1), (2, 3), (4, 5)], [5, 5, 5], 10, 1, [((0, 1), (2, 3)), ((2, 3), (4, 5))]),
    ([(0, 1), (2, 3), (4, 5)], [5, 5, 5], 10, 0, [((0, 1), (2, 3)), ((4, 5),)]),
    ([(0, 1), (2, 3), (4, 5)], [5, 5, 5], 100, 1, [((0, 1), (2, 3), (4, 5))]),
    ([(0, 1), (2, 3), (4, 5)], [9, 9, 9], 10, 1, [((0, 1),), ((2, 3),), ((4, 5),)]),
])
def test_make_chunks(spans, lengths, budget, overlap, expected):
    assert [c.sentences for c in qg.make_chunks(spans, lengths, budget, overlap)] == expected


@pytest.mark.parametrize("count, k, expected", [(10, 3, [0, 4, 9]), (3, 8, [0, 1, 2]), (100, 1, [0]), (5, 5, [0, 1, 2, 3, 4])])
def test_pick_evenly(count, k, expected):
    assert qg.pick_evenly(count, k) == expected


def test_split_long_fits_the_budget(causal_lm):
    text = "word " * 3000 + "x" * 20000
    spans = qg.split_long(text, qg.split_sentences(text), causal_lm.tokenizer, budget=64)
    lengths = qg.token_lengths(causal_lm.tokenizer, [text[s:e] for s, e in spans])
    assert max(lengths) <= 64
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


# --------------------------------------------------------------------------- filters and ranking


@pytest.mark.parametrize("output, expected", [
    (" What is it? Some chatter.\nMore", "What is it?"),
    ("Question: Who built it?", "Who built it?"),
    ("1. How tall is it?\n2. Why?", "How tall is it?"),
    ("\n\n  When did it fall?<sep>Who found it?", "When did it fall?"),
    ("The answer is forty.", "The answer is forty."),
    ('"Where is Pharos?"', "Where is Pharos?"),
])
def test_first_question(output, expected):
    assert qg.first_question(output) == expected


VOLCANO = PASSAGE["volcano"].read_text(encoding="utf-8")


@pytest.mark.parametrize("text, source, answer, expected", [
    ("What is magma called once it reaches the surface?", "model", None, []),
    ("What?", "model", None, ["single word", "not about the passage"]),
    ("Tell me about lava.", "model", None, ["not a question"]),
    ("Is Mount Fuji a stratovolcano?", "model", None, ["yes/no question"]),
    ("lava lava lava lava?", "model", None, ["repeated-token nonsense"]),
    ("How do penguins use their wings?", "model", None, ["not about the passage"]),
    ("When did Tambora erupt?", "model", "1815", []),
    ("Did Tambora erupt in 1815?", "model", "1815", ["yes/no question", "gives away the answer"]),
    ("What does the text say about Mauna Loa?", "rule: named entity", None, []),
    ("What type of volcano are they?", "model", None, ['unclear who or what "they" is']),
    ("How long did it take the lava to cool?", "model", None, []),
    ("What does this eruption mean?", "model", None, []),
    ("What did this do to the lava of Tambora?", "model", None, ['unclear who or what "this" is']),  # "What does this mean?"
    ("What does this volcano release?", "model", None, []),
])
def test_candidate_faults(text, source, answer, expected):
    chunk = qg.Chunk(0, 0, len(VOLCANO), tuple(qg.split_sentences(VOLCANO)))
    cand = qg._Candidate(text, chunk, (0, 10), source)
    qg._check_candidates([cand], VOLCANO, qg.QuestionSettings(), answer)
    assert cand.faults == expected


GREAT_WALL = "长城是中国古代的军事防御工程。它始建于春秋战国时期，秦朝统一后连成一体。1987年，长城被列入世界遗产名录。"
BEES_AR = "النحل حشرات اجتماعية تعيش في خلايا. يصنع النحل العسل من رحيق الأزهار. تتواصل النحلات عبر رقصة خاصة."


@pytest.mark.parametrize("passage, text, expected", [
    (GREAT_WALL, "长城是什么时候开始修建的？", []),
    (GREAT_WALL, "1. 长城为什么被列入世界遗产名录？\n2. 其他", []),
    (GREAT_WALL, "企鹅怎么用翅膀？", ["not about the passage"]),
    (GREAT_WALL, "长城是中国古代的军事防御工程。", ["not a question"]),
    (GREAT_WALL, "哈哈哈哈哈哈？", ["repeated-token nonsense", "not about the passage"]),
    (BEES_AR, "كيف يصنع النحل العسل؟", []),
    (BEES_AR, "كيف تطير الطائرات؟", ["not about the passage"]),
])
def test_questions_in_other_scripts_are_judged_as_english_ones_are(passage, text, expected):
    """A multilingual model's Chinese or Arabic questions were all dropped: "?" was the only question mark,
    and the word filters kept ASCII letters only, so each was "not a question", "single word" and
    "repeated-token nonsense" (the Questions tab said every candidate was dropped)."""
    chunk = qg.Chunk(0, 0, len(passage), tuple(qg.split_sentences(passage)))
    cand = qg._Candidate(qg.first_question(text), chunk, chunk.sentences[0], "model")
    qg._check_candidates([cand], passage, qg.QuestionSettings(), None)
    assert cand.faults == expected
    assert filters.near_duplicate("长城是什么时候修建的？", "长城是什么时候开始修建的？")
    assert not filters.near_duplicate("长城有多长？", "秦朝统一了什么？")


def test_a_bare_pronoun_subject_is_fine_in_a_conversation():
    """"What type of volcano are they?" cannot be answered on its own (the bundled model wrote 7 such of
    315 kept questions on 7 passages); as a conversation's next question the earlier turns name them."""
    chunk = qg.Chunk(0, 0, len(VOLCANO), tuple(qg.split_sentences(VOLCANO)))
    cand = qg._Candidate("What type of volcano are they?", chunk, (0, 10), "model")
    qg._check_candidates([cand], VOLCANO, qg.QuestionSettings(), None, standalone=False)
    assert cand.faults == []


@pytest.mark.parametrize("question, source, expected", [
    ("When did Tambora erupt?", "The eruption of Tambora in 1815", 0.5),
    ("Where are volcanoes found?", "Most volcanoes are found where plates meet", 1.0),
    ("Who won the 2014 Olympics?", "A volcano is an opening", 0.0),
    ("What?", "anything", 0.0),
])
def test_grounding(question, source, expected):
    assert qg.grounding(question, source) == pytest.approx(expected)


@pytest.mark.parametrize("a, b, expected", [
    ("Who built the lighthouse?", "Who built the Lighthouse of Alexandria?", True),
    ("What is photosynthesis?", "What happens during photosynthesis?", False),
    ("Who built the lighthouse?", "When was the lighthouse built?", False),
    ("What does a bee do?", "What does a queen bee do all day?", False),
])
def test_same_question(a, b, expected):
    assert qg.same_question(a, b) is expected


def _cand(text, logprob, grounding, span=(0, 5), source="model"):
    cand = qg._Candidate(text, qg.Chunk(0, 0, 100, ((0, 100),)), span, source)
    cand.lm_logprob, cand.grounding = logprob, grounding
    return cand


@pytest.mark.parametrize("pool, n, expected", [
    # relevance alone decides between unrelated questions
    ([("Where is the mill?", -2.0, 0.5), ("Who founded the town?", -0.5, 1.0)], 2,
     ["Who founded the town?", "Where is the mill?"]),
    # a close variant of the first pick loses to a less likely but different question (diversity)
    ([("Who founded the town of Belavik?", -0.5, 1.0, (0, 5)), ("Who founded the town Belavik first?", -0.6, 1.0, (0, 5)),
      ("Why did the river flood?", -1.5, 0.8, (6, 9))], 2,
     ["Who founded the town of Belavik?", "Why did the river flood?"]),
    # n caps the list
    ([("Where is the mill?", -2.0, 0.5), ("Who founded the town?", -0.5, 1.0)], 1, ["Who founded the town?"]),
])
def test_rank_mmr(pool, n, expected):
    cands = [_cand(*row) for row in pool]
    picked = qg.rank(cands, n, qg.QuestionSettings())
    assert [c.text for c, _ in picked] == expected


@pytest.mark.parametrize("chunks, k, expected", [
    ([0, 0, 0, 1, 2], 3, ["q0", "q3", "q4"]),
    ([0, 0, 0, 1, 2], 4, ["q0", "q3", "q4", "q1"]),
    ([2, 2, 1], 10, ["q2", "q0", "q1"]),
    ([], 3, []),
])
def test_spread_over_chunks(chunks, k, expected):
    cands = [qg._Candidate(f"q{i}", qg.Chunk(c, 0, 1, ()), (0, 1)) for i, c in enumerate(chunks)]
    assert [c.text for c in qg.spread_over_chunks(cands, k)] == expected


def test_rank_prefers_questions_unlike_those_already_shown():
    near = _cand("What makes the river flood?", -0.5, 1.0, (0, 5))
    other = _cand("Who built the stone bridge?", -0.9, 1.0, (6, 9))
    assert [c.text for c, _ in qg.rank([near, other], 1, qg.QuestionSettings())] == ["What makes the river flood?"]
    picked = qg.rank([near, other], 1, qg.QuestionSettings(), seen=["Why does the river flood?"])
    assert [c.text for c, _ in picked] == ["Who built the stone bridge?"] and picked[0][1]["diversity"] == 1.0


def test_rank_score_parts_follow_the_documented_formula():
    settings = qg.QuestionSettings(lm_weight=0.5, mmr_lambda=0.7)
    a, b = _cand("Who founded the town?", -0.5, 1.0, (0, 5)), _cand("Who founded the old town?", -1.0, 0.5, (0, 5))
    (first, p1), (second, p2) = qg.rank([a, b], 2, settings)
    import math

    assert p1["lm"] == pytest.approx(math.exp(-0.5))
    assert p1["relevance"] == pytest.approx(0.5 * math.exp(-0.5) + 0.5 * 1.0)
    assert p1["diversity"] == 1.0 and p1["score"] == pytest.approx(0.7 * p1["relevance"] + 0.3)
    # second: content-stem Jaccard {founde, town} vs {founde, old, town} = 2/3, above the 0.5 same-sentence floor
    assert p2["diversity"] == pytest.approx(1 - 2 / 3)
    assert p2["score"] == pytest.approx(0.7 * p2["relevance"] + 0.3 * (1 - 2 / 3))


def test_accept_keeps_the_better_of_two_duplicates_and_never_a_seen_one():
    good, worse = _cand("Who founded the town?", -0.5, 1.0), _cand("Who founded the town ?", -2.0, 1.0)
    shown = _cand("Where is the mill?", -0.1, 1.0)
    kept = qg._accept([worse, good, shown], seen=["Where is the mill ?"], settings=qg.QuestionSettings())
    assert kept == [good]
    assert worse.faults == ["near-duplicate"] and shown.faults == ["near-duplicate"]


@pytest.mark.parametrize("passage, expected", [
    ("A volcano is an opening in the crust. Tambora erupted in 1815 in Indonesia.",
     [("What is a volcano?", "rule: definition"), ("What happened in 1815?", "rule: number")]),
    ("Photosynthesis is the process that makes sugar. In plants, photosynthesis needs light.",
     [("What is photosynthesis?", "rule: definition")]),
    ("The race was won by Spyridon Louis of Greece in 490 BC.",
     [("What happened in 490 BC?", "rule: number"), ("What does the text say about Spyridon Louis of Greece?", "rule: named entity")]),
    ("Along the Pacific Ring of Fire plates sink.", [("What does the text say about Pacific Ring of Fire?", "rule: named entity")]),
    ("nothing to see here.", []),
    # the templates are English: a German passage gets none ("What does the text say about Der Rhein?")
    ("Der Rhein fließt durch Basel und die Niederlande. Die Brücke von Köln ist alt.", []),
])
def test_rule_questions(passage, expected):
    chunk = qg.Chunk(0, 0, len(passage), tuple(qg.split_sentences(passage)))
    assert [(t, kind) for t, _, kind in qg.rule_questions(passage, chunk)] == expected


def test_settings_validate():
    with pytest.raises(ValueError, match="style must be one of"):
        qg.QuestionSettings(style="poetry")
    with pytest.raises(ValueError, match=r"chunk_tokens must be in \[32, 32768\], got 8"):
        qg.QuestionSettings(chunk_tokens=8)
    assert qg.QuestionSettings().candidate_count(5) == 10 and qg.QuestionSettings(candidates=3).candidate_count(5) == 3


# --------------------------------------------------------------------------- prompts


def test_adapter_prompts_are_the_training_prompts(causal_lm):
    """An adapter is asked exactly what convo.data trained it on (qg / cqg task prompts)."""
    passage = PASSAGE["honeybees"].read_text(encoding="utf-8")
    chunk = qg.Chunk(0, 0, len(passage), tuple(qg.split_sentences(passage)))
    open_prompt = qg.candidate_prompt(causal_lm, "chat", "open", passage, chunk, chunk.sentences[2], None, None, [])
    assert open_prompt == render_prompt(causal_lm, qg_prompt(passage))
    assert QG_SYSTEM in open_prompt
    turns = [Turn("How many workers live in a colony?", "more than fifty thousand")]
    conv_prompt = qg.candidate_prompt(causal_lm, "chat", "conversational", passage, chunk, (0, 10), None, None, turns)
    assert conv_prompt == render_prompt(causal_lm, cqg_prompt(passage, turns))


def test_an_adapter_is_asked_in_the_style_it_was_trained_in(tiny_causal, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from convo.engine import get_model

    base = AutoModelForCausalLM.from_pretrained(tiny_causal)
    get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])).save_pretrained(tmp_path / "qg-adapter")
    lm = get_model(ModelSpec(tiny_causal, adapter=str(tmp_path / "qg-adapter"), dtype="float32"))
    passage = PASSAGE["photosynthesis"].read_text(encoding="utf-8")
    run = qg.question_run(passage, 3, lm, settings=SEEDED)
    assert run.style == "chat" and len(run.questions) == 3
    assert_spans_inside(run.questions + run.dropped, passage)
    run = qg.question_run(passage, 2, lm, history=[], settings=SEEDED)
    assert run.style == "chat" and run.mode == "conversational"
    # an adapter convo trained on the qg task says so, and is asked in the few-shot style it learned
    import json
    import shutil

    shutil.copytree(tmp_path / "qg-adapter", tmp_path / "fewshot-adapter")
    (tmp_path / "fewshot-adapter" / "convo_adapter.json").write_text(json.dumps({"task": "qg", "prompt_style": "fewshot"}))
    lm = get_model(ModelSpec(tiny_causal, adapter=str(tmp_path / "fewshot-adapter"), dtype="float32"))
    assert lm.prompt_style == "fewshot" and qg.resolve_style(lm, "auto") == "fewshot"
    run = qg.question_run(passage, 2, lm, settings=SEEDED)
    assert run.style == "fewshot" and len(run.questions) == 2


def test_style_resolution_and_seq2seq_formats(causal_lm, seq2seq_lm):
    assert qg.resolve_style(causal_lm, "auto") == "fewshot"
    assert qg.resolve_style(seq2seq_lm, "auto") == "highlight"
    with pytest.raises(qg.QuestionError) as err:
        qg.resolve_style(causal_lm, "highlight")
    assert str(err.value).startswith("The 'highlight' prompt style is for seq2seq (T5-style) models;")
    passage = "Bees dance. The queen lays eggs."
    chunk = qg.Chunk(0, 0, len(passage), tuple(qg.split_sentences(passage)))
    assert (qg.target_prompt(seq2seq_lm, "highlight", passage, chunk, (12, 32), None)
            == "generate question: Bees dance. <hl> The queen lays eggs. <hl>")
    assert qg.target_prompt(seq2seq_lm, "prefix", passage, chunk, (12, 32), "eggs") == f"answer: eggs  context: {passage}"
    assert qg.target_prompt(seq2seq_lm, "prefix", passage, chunk, (12, 32), None) == "generate question: The queen lays eggs."


def test_qg_training_text_is_the_question_prompt_of_the_questions_tab(causal_lm):
    """The text a qg example trains on is the Questions tab's few-shot prompt for that span, then
    the question and the model's end marker: trained as it is asked."""
    from convo.data import Passage, build_examples, render
    from convo.questions import end_marker, fewshot_prompt

    [example] = build_examples([Passage("Bees dance to show where flowers are.", [Turn("Why do bees dance?", "to show")])],
                               "qg")
    prompt = fewshot_prompt("Bees dance to show where flowers are.", None, end_marker(causal_lm))
    assert render(causal_lm, example[:1]) == prompt
    assert render(causal_lm, example) == prompt + " Why do bees dance?" + end_marker(causal_lm)


def test_fewshot_prompt_ends_examples_with_the_stop_token(causal_lm):
    prompt = qg.target_prompt(causal_lm, "fewshot", "Bees dance.", qg.Chunk(0, 0, 11, ((0, 11),)), (0, 11), None)
    assert "When was the Eiffel Tower completed?<|im_end|>\n" in prompt
    assert prompt.endswith("Text: Bees dance.\nQuestion:")


# --------------------------------------------------------------------------- the pipeline on tiny models


def test_long_passage_on_a_tiny_model(causal_lm):
    passage = long_passage()
    assert len(passage.split()) >= 20_000
    started = time.monotonic()
    run = qg.question_run(passage, 5, causal_lm, settings=SEEDED)
    took = time.monotonic() - started
    assert len(run.questions) == 5
    assert run.chunks > SEEDED.max_chunks
    assert run.chunks_used[0] == 0 and run.chunks_used[-1] == run.chunks - 1 and len(run.chunks_used) == SEEDED.max_chunks
    assert run.generated == 10
    assert_spans_inside(run.questions + run.dropped, passage)
    assert len({q.chunk for q in run.questions}) > 1, "questions come from more than one chunk"
    assert len({q.span for q in run.questions}) > 1
    for q in run.questions:
        assert q.text.endswith("?") and len(q.text.split()) > 1 and q.kept
        if q.source.startswith("rule"):  # the rule's subject is in the sentence it points at
            assert rule_subject(q.text) in passage[q.span[0]:q.span[1]], q
    assert pairwise_distinct(q.text for q in run.questions)
    assert took < 60, f"20,000 words took {took:.1f} s on the tiny model"


@pytest.mark.parametrize("passage", [
    "word " * 20_000,                                    # no sentence ends at all
    "x" * 200_000,                                       # one enormous token run
    "Short one.",                                        # shorter than any chunk
])
def test_no_length_error_reaches_the_user(passage, causal_lm, seq2seq_lm):
    for lm in (causal_lm, seq2seq_lm):
        run = qg.question_run(passage, 3, lm, settings=SEEDED)
        assert_spans_inside(run.questions + run.dropped, passage)
        assert run.generated == 8


def test_seq2seq_and_conversational_and_answer_modes_run(seq2seq_lm, causal_lm):
    passage = PASSAGE["honeybees"].read_text(encoding="utf-8")
    run = qg.question_run(passage, 3, seq2seq_lm, settings=SEEDED)
    assert run.style == "highlight" and run.mode == "open"
    history = [("What happened in 1973?", "Karl von Frisch shared the Nobel Prize")]
    run = qg.question_run(passage, 3, causal_lm, history=history, settings=SEEDED)
    assert run.mode == "conversational"
    assert all(not filters.near_duplicate(q.text, history[0][0]) for q in run.questions)
    assert "near-duplicate" in {r for q in run.dropped for r in q.reasons}
    answer = "The Austrian scientist Karl von Frisch"
    run = qg.question_run(passage, 3, causal_lm, answer=answer, settings=SEEDED)
    assert run.mode == "answer" and len(run.chunks_used) == 1
    start = passage.index(answer)
    assert [(q.text, q.source) for q in run.questions] == [
        ("Who or what described this language of bees and shared the Nobel Prize in Physiology or Medicine in 1973?",
         "rule: answer subject")]
    assert run.questions[0].span[0] == start


def test_bad_core_inputs_name_the_fault(causal_lm):
    with pytest.raises(qg.QuestionError, match=r"^The passage is empty: give some text \(pasted, or in a \.txt, \.md, \.html, \.pdf or \.docx file\)\.$"):
        qg.generate_questions("  \n", 3, causal_lm)
    with pytest.raises(qg.QuestionError, match=r"^The number of questions must be between 1 and 50, got 0.$"):
        qg.generate_questions("Bees dance.", 0, causal_lm)
    with pytest.raises(qg.QuestionError, match="^The answer 'penguins' does not appear in the passage"):
        qg.generate_questions("Bees dance.", 2, causal_lm, answer="penguins")
    with pytest.raises(qg.QuestionError, match=r"^history\[0\]: expected a question string"):
        qg.generate_questions("Bees dance.", 2, causal_lm, history=[42])


def test_a_session_never_shows_a_question_twice(causal_lm):
    passage = PASSAGE["marathon"].read_text(encoding="utf-8")  # many names and years
    seen: list[str] = []
    for _ in range(4):
        batch = qg.generate_questions(passage, 4, causal_lm, settings=SEEDED, seen=seen)
        for q in batch:
            assert not any(filters.near_duplicate(q.text, s) or qg.same_question(q.text, s) for s in seen), q.text
        seen += [q.text for q in batch]
    assert len(seen) >= 8
    assert pairwise_distinct(seen)


# --------------------------------------------------------------------------- the tab's handlers


@pytest.mark.parametrize("name, expected", [
    ("empty.txt", "empty.txt: the file is empty."),
    ("blank.md", "blank.md: the file is empty."),
    ("image.txt", "image.txt: this is a binary file, not text: convo reads .txt, .md, .html, .pdf or .docx files."),
    ("latin1.txt", "latin1.txt: the file is not UTF-8 text (invalid byte at position 22). "
                   "Save it as UTF-8 and try again."),
    # documents (tests/data/passages/documents/make_documents.py made them)
    ("cut.pdf", "cut.pdf: the file is not a PDF that can be read (PdfStreamError: Stream has ended unexpectedly)."),
    ("scan.pdf", "scan.pdf: the file has no text to read (a scanned PDF holds images of its pages: run it through "
                 "OCR first)."),
    ("locked.pdf", "locked.pdf: the file is protected by a password: save an unprotected copy and use that."),
    ("notes.docx", "notes.docx: the file is not a Word .docx document (BadZipFile: File is not a zip file)."),
    ("menu.html", "menu.html: the file has no text outside its menus, scripts and code blocks."),
    ("cafe.htm", "cafe.htm: the file is not UTF-8 (invalid byte at position 31) and declares no charset."),
])
def test_tab_rejects_bad_uploads_with_one_message(name, expected, caplog):
    from convo.ui import questions as tab

    assert tab.read_upload(str(BAD / name)) == (None, expected)
    passage_update, status = tab.on_upload(str(BAD / name))
    assert status == expected and passage_update == {"__type__": "update"}
    # the message is the user's; the app's log got pypdf's "EOF marker not found", naming no file
    assert [r.getMessage() for r in caplog.records if r.name.startswith("pypdf")] == []


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_tab_reads_text_saved_as_utf16_or_utf32(tmp_path, codec):
    """Windows Notepad's "Unicode" is UTF-16 with a byte-order mark: it was refused as a binary file."""
    from convo.ui import questions as tab

    text = "Café au lait.\r\nBees dance — and they hum."
    bom = {"utf-16-be": b"\xfe\xff"}.get(codec, b"")  # "utf-16" and "utf-32" write their own
    path = tmp_path / "notepad.txt"
    path.write_bytes(bom + text.encode(codec))
    assert tab.read_upload(str(path)) == (text, "Loaded notepad.txt: 9 words.")
    path.write_bytes(b"\xff\xfe" + "Bees".encode("utf-16-le")[:-1])  # a byte short
    assert tab.read_upload(str(path)) == (None, "notepad.txt: the file starts with a UTF-16-LE byte-order mark "
                                                "but is not valid UTF-16-LE text (at offset 8). Save it as UTF-8 "
                                                "and try again.")


def test_tab_rejects_an_oversize_upload(tmp_path):
    from convo.ui import questions as tab

    big = tmp_path / "big.txt"
    big.write_bytes(b"Bees dance. " * (qg.MAX_PASSAGE_BYTES // 12 + 1))
    assert tab.read_upload(str(big)) == (None, "big.txt: the file is 2.0 MB; the limit is 2 MB. Split it, or use a part of it.")


def test_tab_loads_a_good_upload():
    from convo.ui import questions as tab

    path = PASSAGE["honeybees"]
    text, status = tab.read_upload(str(path))
    assert text == path.read_text(encoding="utf-8")
    assert status == f"Loaded honeybees.txt: {len(text.split()):,} words."


README_MD = """# The Eiffel Tower

The **Eiffel Tower** is a wrought-iron lattice tower on the [Champ de Mars](https://example.org/champ) in Paris.

## History
- It was designed by the company of *Gustave Eiffel*.
1. Locals call it `La dame de fer` ("Iron Lady").

```python
print("not prose")
```

| Height | Year |
|:---|---:|
| 330 m | 2022 |
"""


def test_a_markdown_upload_is_read_without_its_markup(tmp_path):
    """A .md passage's markup reached the questions ("What type of building does the **Eiffel Tower**
    serve as?", bundled model): the tab and the command line now read the text a reader sees, and say
    so; a .txt file's asterisks stay."""
    from convo.cli.questions import read_passage_arg
    from convo.ui import questions as tab

    path = tmp_path / "tower.md"
    path.write_text(README_MD, encoding="utf-8")
    text, status = tab.read_upload(str(path))
    assert text == ("The Eiffel Tower\n\nThe Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris."
                    "\n\nHistory\n\nIt was designed by the company of Gustave Eiffel.\nLocals call it La dame de fer "
                    "(\"Iron Lady\").\n\nHeight, Year\n330 m, 2022")
    assert status == f"Loaded tower.md: {len(text.split())} words (its Markdown formatting left out)."
    assert read_passage_arg(str(path)) == text
    assert [text[s:e] for s, e in qg.split_sentences(text)][:3] == [
        "The Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.", "History"]
    plain = tmp_path / "tower.txt"
    plain.write_text(README_MD, encoding="utf-8")
    assert tab.read_upload(str(plain))[0] == README_MD
    path.write_text("```\nonly code\n```\n", encoding="utf-8")
    assert tab.read_upload(str(path)) == (None, "tower.md: the file has no text outside its Markdown markup and code blocks.")


DOCUMENTS = Path(__file__).parent / "data" / "passages" / "documents"
"""A Wikipedia page as a browser saves it, and a PDF (Chromium's print) and a Word file (python-docx)
of the five passages: made by tests/data/passages/documents/make_documents.py."""


def _five_passages(*extra: str) -> str:
    parts = []
    for name in ("honeybees", "lighthouse", "marathon", "photosynthesis", "volcano"):
        parts += [name.capitalize(), *PASSAGE[name].read_text(encoding="utf-8").strip().split("\n\n")]
    return "\n\n".join(parts + list(extra))


def test_a_pdf_printed_by_chromium_reads_as_its_paragraphs():
    """Lines joined into paragraphs (across page breaks too), headings their own; the running title
    and "Page N of 4" gone: the text is the five passages as written."""
    from convo.ui import questions as tab

    text, status = tab.read_upload(str(DOCUMENTS / "passages.pdf"))
    assert text == _five_passages()
    assert status == (f"Loaded passages.pdf: {len(text.split()):,} words (the PDF's text, its lines joined into "
                      "paragraphs, without page numbers and running headers).")


def test_a_word_document_reads_as_its_paragraphs_table_and_list():
    from convo.cli.questions import read_passage_arg

    text = read_passage_arg(str(DOCUMENTS / "passages.docx"))
    assert text == "\n\n".join(["Five short passages", _five_passages(
        "Facts in a table", "Subject, Figure", "Workers in a summer colony, 50,000",
        "Nobel Prize for the waggle dance, 1973", "Bees make honey from nectar.", "A lighthouse warns ships at night.")])


def test_a_saved_web_page_reads_as_its_article():
    """Menus, search, table of contents, edit links, reference marks, "[citation needed]", the code
    block, the figure, the reference list, navigation boxes, categories and the footer are not the text."""
    from convo.ui import questions as tab

    text, status = tab.read_upload(str(DOCUMENTS / "honeybee.html"))
    paragraphs = text.split("\n\n")
    bees = PASSAGE["honeybees"].read_text(encoding="utf-8").strip().split("\n\n")
    assert paragraphs[:5] == ["Western honey bee", "Western honey bee", "Kingdom: Animalia", "Order: Hymenoptera",
                              "Species: A. mellifera"]
    assert paragraphs[5] == bees[0].replace("honey bee lives", "honey bee (Apis mellifera) lives")
    assert paragraphs[6:] == ["Honey", bees[1], "Communication", bees[2], "References"]
    assert status.endswith("words (the page's text, without its menus, scripts and reference marks).")


def test_a_page_with_a_main_element_reads_as_that_element():
    """A documentation page (mdBook's, as rustdoc's book is built) keeps a keyboard-help overlay, hidden by
    its CSS, outside <main>: "Press ? to show this help" was the passage's first line."""
    page = ("<body><div id='help'><h2>Keyboard shortcuts</h2><p>Press ? to show this help</p></div>"
            "<div class='sidebar'><ol><li>Chapter 1</li></ol></div><main><h1>What is rustdoc?</h1>"
            "<p>It generates <code>HTML</code> documentation.</p><pre>rustdoc src/lib.rs</pre></main></body>")
    assert qg.html_to_text(page) == "What is rustdoc?\n\nIt generates HTML documentation."
    assert qg.html_to_text(page.replace("<main>", "<div>").replace("</main>", "</div>")).startswith("Keyboard shortcuts")


def test_headings_and_table_rows_of_a_document_are_not_asked_about():
    """A question aimed at "Western honey bee" (the page's title) read "What kind of animal would you
    have if you could find a western honey bee?" (bundled model): lines that end no sentence are not targets."""
    text = qg.read_passage((DOCUMENTS / "honeybee.html").read_bytes(), "honeybee.html")
    chunk = qg.Chunk(0, 0, len(text), tuple(qg.split_sentences(text)))
    targets = [text[s:e] for s, e in qg.target_units(text, chunk)]
    assert len(targets) == 10 and all(t.endswith(".") for t in targets), targets
    assert not any(line in t for t in targets for line in ("Western honey bee\n", "Kingdom: Animalia", "\nHoney",
                                                           "Communication", "References"))


def test_a_sentence_after_a_heading_or_a_byline_is_asked_about_alone():
    """libtasn1's manual (its PDF) gave the target "Nikos Mavrogiannopoulos (help-libtasn1@gnu.org) This
    manual is for ...": a sentence that opens with a pronoun or a short one was joined to the line before
    it, a byline or a heading too. Lines that end no sentence join nothing; sentences still do."""
    text = ("Libtasn1 reference manual\n\nNikos Mavrogiannopoulos (help-libtasn1@gnu.org)\n\n"
            "This manual is for GNU Libtasn1, a library for ASN.1 structures.\n\nHistory\n\n"
            "It was written in 2002 for GnuTLS.\n\nThe library parses DER data. It also checks it.")
    chunk = qg.Chunk(0, 0, len(text), tuple(qg.split_sentences(text)))
    assert [text[s:e] for s, e in qg.target_units(text, chunk)] == [
        "This manual is for GNU Libtasn1, a library for ASN.1 structures.", "It was written in 2002 for GnuTLS.",
        "The library parses DER data.", "The library parses DER data. It also checks it."]


def test_rule_questions_ask_nothing_about_a_heading_or_a_name_in_a_list():
    """A manual's list of contributors gave "What does the text say about Fabio Fiorina?" (libtasn1's PDF)."""
    text = ("Contributors\n\nFabio Fiorina\n\nNikos Mavrogiannopoulos\n\n"
            "Simon Josefsson maintained the library in Stockholm from 2006.")
    chunk = qg.Chunk(0, 0, len(text), tuple(qg.split_sentences(text)))
    assert [q for q, _, _ in qg.rule_questions(text, chunk)] == [
        "What happened in 2006?", "What does the text say about Simon Josefsson?"]


def test_documents_as_people_have_them_are_read(tmp_path):
    """A PDF locked only against changes (AES: needs pypdf's cryptography), a PDF named .txt (known by
    its first bytes), a Windows-1252 page that says so in its <meta>."""
    from convo.ui import questions as tab

    assert tab.read_upload(str(DOCUMENTS / "statement.pdf"))[0] == _five_passages()
    renamed = tmp_path / "renamed.txt"
    renamed.write_bytes((DOCUMENTS / "passages.pdf").read_bytes())
    assert tab.read_upload(str(renamed))[0] == _five_passages()
    renamed = renamed.rename(tmp_path / "renamed.md")  # the status says what was read: a PDF, not Markdown
    text, status = tab.read_upload(str(renamed))
    assert text == _five_passages() and status.endswith("(the PDF's text, its lines joined into paragraphs, "
                                                        "without page numbers and running headers).")
    assert tab.read_upload(str(DOCUMENTS / "cafe.html"))[0] == "Café au lait."


def test_a_pdf_with_too_much_text_stops_at_the_page_that_passes_the_limit(monkeypatch):
    """Checked page by page: a crafted PDF's pages can unpack to 75 MB of text each (pypdf's cap is per stream)."""
    from convo.questions import pipeline

    monkeypatch.setattr(pipeline, "MAX_PASSAGE_BYTES", 1500)
    with pytest.raises(qg.QuestionError, match=r"^passages\.pdf: the file holds more than 1,500 characters of text "
                                               r"\(by page 2\): save the part you want as its own file\.$"):
        qg.read_passage((DOCUMENTS / "passages.pdf").read_bytes(), "passages.pdf")


def test_a_docx_that_unpacks_to_too_much_is_refused_unread(tmp_path):
    """A .docx is a zip: a few hundred KB can unpack to gigabytes. Refused by its declared size."""
    import zipfile

    from convo.questions import documents

    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"<w:document>" + b" " * (documents.MAX_DOCX_XML_BYTES + 1))
    assert path.stat().st_size < 200_000
    with pytest.raises(qg.QuestionError, match=r"bomb\.docx: the file unpacks to 50 MB of document; the limit is 50 MB"):
        qg.read_passage(path.read_bytes(), "bomb.docx")


def _generate(tab, passage, model, seen=(), mode="Open questions", answer="", history="", n=4, shown=None, style="auto"):
    return tab.on_generate(passage, n, mode, answer, history, True, style, model, "(none)", "none", list(seen),
                           shown=shown)


def test_a_run_that_keeps_nothing_suggests_forgetting_only_what_was_shown():
    """"Forget shown questions" was suggested when nothing had been shown, where it cannot help."""
    from types import SimpleNamespace

    from convo.ui.questions import run_status

    run = SimpleNamespace(questions=[], model_kept=0)
    assert run_status(run, shown_before=True).endswith("Try again, or 'Forget shown questions'.")
    assert run_status(run, shown_before=False).endswith("Try again (each run samples anew), or another passage or model.")


def test_a_run_with_no_questions_offers_no_downloads(tiny_causal, monkeypatch):
    """A run that keeps no question offered questions.csv (its header alone) and questions.json ("[]")."""
    from types import SimpleNamespace

    from convo.ui import questions as tab

    nothing = SimpleNamespace(questions=[], dropped=[], model_kept=0, generated=6, chunks=1, chunks_used=[], mode="open",
                              style="chat", seconds=0.1)
    monkeypatch.setattr(tab, "question_run", lambda *args, **kwargs: nothing)
    out = _generate(tab, "Bees dance to tell the hive where flowers are.", tiny_causal, shown=[])
    assert out[1].startswith("No new questions: every candidate was dropped")
    assert out[5] is None and out[3] == []


def test_tab_generate_input_checks(tiny_causal):
    from convo.ui import questions as tab

    cases = [
        (dict(passage=""), "The passage is empty: give some text (pasted, or in a .txt, .md, .html, .pdf or .docx file)."),
        (dict(passage="Bees. " * 400_000), "The passage: its text is 2.4 MB; the limit is 2 MB. Split it, or use a part of it."),
        (dict(passage="Bees dance.", mode="Answer-aware"),
         "Answer-aware mode needs an answer: select a span of the passage or type it."),
        (dict(passage="Bees dance.", mode="Conversational (next question)", history="A: yes"),
         "Conversation so far, line 1: an answer needs a question before it."),
    ]
    for kwargs, message in cases:
        out = _generate(tab, model=tiny_causal, **kwargs)
        assert out[1] == message
        assert all(o == {"__type__": "update"} for i, o in enumerate(out) if i != 1)
    # after a run, the table still shows its questions: the message says whose they are
    out = _generate(tab, model=tiny_causal, passage="", seen=["What is a bee?"], shown=[{"text": "What is a bee?"}])
    assert out[1] == cases[0][1] + " The questions below are from the previous run."
    # ... and not when the last run had none, though questions were shown before it (the table is empty)
    out = _generate(tab, model=tiny_causal, passage="", seen=["What is a bee?"], shown=[])
    assert out[1] == cases[0][1]


def test_tab_generate_select_download_and_ask_in_chat(tiny_causal):
    from convo.ui import questions as tab

    passage = PASSAGE["marathon"].read_text(encoding="utf-8")
    table, status, seen, current, used, files, dropped, html, selected = _generate(tab, passage, tiny_causal)
    rows = table["value"]
    assert table["headers"][6] == "Sentiment (off)"  # not weighed: the blank column says why
    assert len(rows) == 4 and [r[0] for r in rows] == [1, 2, 3, 4]
    assert all(r[1].endswith("?") for r in rows) and seen == [r[1] for r in rows]
    assert re.fullmatch(r"4 questions \(4 rule-based\) from (\d+) of \1 chunks?, 8 model samples "
                        r"\(open, fewshot prompts\), in \d+\.\d s\.", status), status
    assert used == passage and selected == rows[0][1]
    csv_file, json_file = files
    records = json.loads(Path(json_file).read_text(encoding="utf-8"))
    assert [r["text"] for r in records] == [r[1] for r in rows]
    assert Path(csv_file).read_text(encoding="utf-8").splitlines()[0].startswith("rank,text,score,lm,")
    assert all(passage[r["span_start"]:r["span_end"]] == r["sentence"] for r in records)
    # clicking row 3 highlights its sentence
    html3, text3 = tab.select_question(current, used, 2)
    sentence = passage[current[2]["span"][0]:current[2]["span"][1]]
    assert text3 == rows[2][1] and f"<mark>{sentence}</mark>" in html3.replace("&#x27;", "'")
    # ask in chat
    chat_value, tabs_update, note = tab.ask_in_chat(text3, current, used)
    assert chat_value == f'"{" ".join(sentence.split())}"\n\n{text3}' and note == ""  # with what it asks about
    assert tabs_update.selected == "chat"
    assert tab.ask_in_chat("")[2] == tab.SELECT_FIRST
    assert tab.ask_in_chat("My own question?", current, used)[0] == "My own question?"  # typed over: as typed
    # a second run in the same session shows only new questions
    table2, *_ = _generate(tab, passage, tiny_causal, seen=seen)
    assert pairwise_distinct([r[1] for r in rows] + [r[1] for r in table2["value"]])


def test_ui_module_does_not_import_torch_or_transformers():
    source = (ROOT / "convo" / "ui" / "questions.py").read_text(encoding="utf-8")
    imports = [line for line in source.splitlines() if line.lstrip().startswith(("import ", "from "))]
    assert not any("torch" in line or "transformers" in line for line in imports)


# --------------------------------------------------------------------------- CLI


def _cli_env(tmp_path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", CONVO_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    env.pop("CONVO_MODEL", None)
    return env


def test_cli_on_a_file_and_on_stdin(tiny_causal, tmp_path):
    """``python -m convo questions --file F`` and ``python -m convo.questions`` reading stdin agree."""
    passage_file = PASSAGE["lighthouse"]
    passage = passage_file.read_text(encoding="utf-8")
    common = ["-n", "3", "--model", tiny_causal, "--seed", "0"]
    by_file = subprocess.run([sys.executable, "-m", "convo", "questions", "--file", str(passage_file)] + common,
                             capture_output=True, text=True, env=_cli_env(tmp_path), cwd=tmp_path, timeout=300)
    assert by_file.returncode == 0, by_file.stderr
    by_stdin = subprocess.run([sys.executable, "-m", "convo.questions", "--file", "-"] + common, input=passage,
                              capture_output=True, text=True, env=_cli_env(tmp_path), cwd=tmp_path, timeout=300)
    assert by_stdin.returncode == 0, by_stdin.stderr
    for output in (by_file.stdout, by_stdin.stdout):
        records = [json.loads(line) for line in output.splitlines()]
        assert len(records) == 3
        for r in records:
            assert set(r) >= {"text", "score", "parts", "span", "source", "sentence"}
            assert r["text"].endswith("?") and set(r["parts"]) >= {"lm", "grounding", "diversity"}
            assert passage[r["span"][0]:r["span"][1]] == r["sentence"]
    assert by_file.stdout == by_stdin.stdout


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "convo.questions", "--file", str(BAD / "image.txt")],
                            capture_output=True, text=True, env=_cli_env(tmp_path), cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: image.txt: this is a binary file, not text: convo reads .txt, .md, .html, .pdf or .docx files.\n"
    # a folder is named as one (it said "no such file")
    result = subprocess.run([sys.executable, "-m", "convo.questions", "--file", str(BAD)],
                            capture_output=True, text=True, env=_cli_env(tmp_path), cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and result.stderr == f"error: {BAD} is a folder: give the passage's file.\n"
    result = subprocess.run([sys.executable, "-m", "convo.questions", "--mode", "answer", "--file", str(PASSAGE["honeybees"])],
                            capture_output=True, text=True, env=_cli_env(tmp_path), cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and result.stderr == "error: --mode answer needs --answer TEXT.\n"


def test_register_cli_adds_the_subcommand():
    import argparse

    parser = argparse.ArgumentParser()
    qcli.register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["questions", "-n", "2", "--mode", "conversational", "--model", "x"])
    assert args.func is qcli.run_cli and args.n == 2 and args.file == "-" and args.mode == "conversational"


# --------------------------------------------------------------------------- the bundled model (acceptance)


@pytest.mark.slow
@pytest.mark.parametrize("path", PASSAGES, ids=lambda p: p.stem)
def test_bundled_model_questions(path):
    """Acceptance: >= 3 distinct model questions per passage, each ending in '?', none single-word,
    none duplicated, each with a source span inside the passage; measured time printed."""
    from convo.engine import get_model

    lm = get_model("bundled")
    passage = path.read_text(encoding="utf-8")
    assert 80 <= len(passage.split()) <= 400
    started = time.monotonic()
    run = qg.question_run(passage, 5, lm, settings=SEEDED)
    took = time.monotonic() - started
    print(f"{path.stem}: {took:.1f} s {run.timings}; " + " | ".join(q.text for q in run.questions))
    model_questions = [q for q in run.questions if q.source == "model"]
    assert len(model_questions) >= 3, [(q.text, q.reasons) for q in run.dropped]
    for q in run.questions:
        assert q.text.endswith("?") and len(filters.words(q.text)) > 1
    assert pairwise_distinct(q.text for q in run.questions)
    assert_spans_inside(run.questions, passage)
    assert took < 90, f"{took:.1f} s (target < 20 s on an idle 2-core CPU)"


# --------------------------------------------------------------------------- browser helper for the lead


def drive_questions_tab(page, passage: str, chat_input_selector: str, timeout_ms: int = 120_000) -> str:
    """Playwright steps for the app's browser test, on a page showing the app: open the Questions tab,
    type ``passage``, generate, click the first question, check its sentence is highlighted, press
    "Ask in chat" and check the chat input holds the question after its quoted sentence. Returns the question."""
    page.get_by_role("tab", name="Questions").click()
    page.locator("#questions-passage textarea").fill(passage)
    page.locator("#questions-generate").click()
    first_cell = page.locator("#questions-table [data-testid='cell-0-1']")  # row 0, column "Question"
    first_cell.filter(has_text="?").wait_for(timeout=timeout_ms)
    question = first_cell.inner_text().strip()
    first_cell.click()
    mark = page.locator("#questions-source mark")
    mark.wait_for(timeout=timeout_ms)
    assert " ".join(mark.inner_text().split()) in " ".join(passage.split())
    page.wait_for_function("q => document.querySelector('#questions-selected textarea').value === q", arg=question,
                           timeout=timeout_ms)
    sentence = " ".join(mark.inner_text().split())
    page.locator("#questions-ask-chat").click()
    page.wait_for_function("([sel, q]) => document.querySelector(sel).value === q",
                           arg=[chat_input_selector, f'"{sentence}"\n\n{question}'], timeout=timeout_ms)
    assert page.get_by_role("tab", name="Chat").get_attribute("aria-selected") == "true"
    return question


@pytest.mark.browser
def test_questions_tab_in_the_app(chromium, launch, tiny_causal):
    """The whole app (python app.py on the tiny model) in Chromium, driven by drive_questions_tab."""
    app = launch(model=tiny_causal)
    context = chromium.new_context()
    page = context.new_page()
    page.goto(app.url)
    question = drive_questions_tab(page, PASSAGE["marathon"].read_text(encoding="utf-8"), "#chat-input textarea")
    assert question.endswith("?")
    # a Chinese passage: each candidate is about one of its sentences (each was the whole passage)
    page.get_by_role("tab", name="Questions").click()
    page.locator("#questions-passage textarea").fill(GREAT_WALL)
    before = page.locator("#questions-status").inner_text()
    page.locator("#questions-generate").click()
    page.wait_for_function("b => document.querySelector('#questions-status').innerText !== b", arg=before,
                           timeout=120_000)
    page.get_by_text("Dropped candidates (why)").click()
    page.wait_for_function("""p => { const c = document.querySelector("#questions-dropped [data-testid='cell-0-3']");
        return c && p.includes(c.innerText.trim().slice(0, 5)); }""", arg=GREAT_WALL, timeout=30_000)
    sentences = page.evaluate("""() => [...document.querySelectorAll("#questions-dropped [data-testid^='cell-']")]
        .filter(c => c.getAttribute('data-testid').endsWith('-3')).map(c => c.innerText.trim())""")
    page.screenshot(path=str(app.data_dir.parent / "questions-chinese.png"), full_page=True)
    assert sentences and all(s in GREAT_WALL and len(s) < len(GREAT_WALL) for s in sentences), sentences
    context.close()
