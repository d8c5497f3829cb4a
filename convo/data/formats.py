"""Format readers: official CoQA, simplified CoQA, SQuAD v1.1/v2.0, flat QA and chat JSONL, each into
passages or conversations."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .base import NO_ANSWER, Passage, ROLES, Turn, _LineFault, _Parsed
from .checks import _child, _field, _object, _quote, _string_list, _text_ok, _type_name


_RecordReader = Callable[[Any, str], "tuple[Any, list[str], list[tuple[str, str]]]"]


def _read_records(records: list, fmt: str, prefix: str, read_one: _RecordReader) -> _Parsed:
    return _read_located(fmt, [(f"{prefix}[{index}]", record) for index, record in enumerate(records)], read_one)


def _read_located(fmt: str, records: list[tuple[str, Any]], read_one: _RecordReader) -> _Parsed:
    """Records given with their locations (``data[3]``, ``line 4``), each read by ``read_one``."""
    parsed = _Parsed(fmt, records=len(records))
    for location, record in records:
        _keep(parsed, location, *read_one(record, location), held=_listed(record, "questions"))
    return parsed


LAYOUT_KEYS = ("story", "context", "paragraphs", "messages", "conversations", "instruction", "chosen", "prompt",
               "question")
"""Keys that tell a record's format: a record with none of them (a CoQA story that lost its "story")
says nothing of the file's format, so the first record that has one is the one looked at."""
TELLING_RECORDS = 1000
"""How many records at most are looked through for the first that tells the format."""


def telling_record(records: list) -> dict | None:
    """The first of the first ``TELLING_RECORDS`` records (objects) that has a key telling its format
    (``LAYOUT_KEYS``); else the first object, or None when there is none. The format of a file whose
    first record lost its telling key was read from that record alone ("unrecognised format"), where
    the same fault in its second record was a fault of that record.

    >>> telling_record([{"questions": ["Why?"]}, {"story": "A.", "questions": []}])["story"]
    'A.'
    """
    objects = [record for record in records[:TELLING_RECORDS] if isinstance(record, dict)]
    return next((record for record in objects if any(key in record for key in LAYOUT_KEYS)),
                objects[0] if objects else None)


def _read_passages(records: list[tuple[str, Any]]) -> _Parsed:
    """Passages in a list or JSON Lines: CoQA records (``story``; Hugging Face ``datasets`` writes CoQA
    so) or simplified CoQA ones (``context``), by the first record that tells which (``telling_record``)."""
    first = telling_record([record for _, record in records]) or {}
    if "story" in first:
        return _read_located("coqa", records, _read_coqa_record)
    return _read_located("coqa-simple", records, _read_simple_record)


def passage_layout(record: Any) -> bool:
    """Is ``record`` a CoQA or simplified CoQA passage (``story`` or ``context``, with ``questions``)?"""
    return isinstance(record, dict) and "questions" in record and ("story" in record or "context" in record)


def _listed(record: Any, key: str) -> int:
    """How many entries ``record[key]`` lists (0 when it is not a list)."""
    entries = record.get(key) if isinstance(record, dict) else None
    return len(entries) if isinstance(entries, list) else 0


def _keep(parsed: _Parsed, location: str, item: Any, turn_locations: list[str], faults: list, held: int = 0) -> None:
    """Keep a read item, or skip it for its faults; ``held``: the questions a skipped record held."""
    parsed.faults.extend(faults)
    if faults or item is None:
        parsed.skipped += 1
        parsed.skipped_questions += held
    else:
        parsed.items.append(item)
        parsed.sources.append(location)
        parsed.turn_locations.append(turn_locations)


def _read_simple_record(record: Any, location: str, passage_key: str = "context"):
    faults: list[tuple[str, str]] = []
    if _object(record, location, faults) is None:
        return None, [], faults
    context = _field(record, passage_key, str, location, faults)
    questions = _string_list(record, "questions", location, faults, required=True)
    if isinstance(record.get("answers"), dict):  # Hugging Face datasets: {"input_text": [...], "answer_start": [...]}
        answers = _string_list(record["answers"], "input_text", _child(location, "answers"), faults, required=True)
    else:
        answers = _string_list(record, "answers", location, faults, required=False)
    if questions and answers and len(answers) != len(questions):
        faults.append((location, f"{len(questions)} questions but {len(answers)} answers"))
    if faults:
        return None, [], faults
    turns = [Turn(q.strip(), answers[i].strip() if answers else None) for i, q in enumerate(questions)]
    locations = [f"{location}.questions[{i}]" for i in range(len(turns))]
    return Passage(context.strip(), turns, location), locations, faults


def _read_coqa_record(record: Any, location: str):
    faults: list[tuple[str, str]] = []
    if _object(record, location, faults) is None:
        return None, [], faults
    questions = record.get("questions")
    if isinstance(questions, list) and questions and isinstance(questions[0], str):
        # CoQA as Hugging Face datasets writes it (stanfordnlp/coqa): questions a list of strings,
        # answers {"input_text": [...], "answer_start": [...], "answer_end": [...]}
        return _read_simple_record(record, location, passage_key="story")
    story = _field(record, "story", str, location, faults)
    questions = _coqa_turns(record, "questions", location, faults, required=True)
    answers = _coqa_turns(record, "answers", location, faults, required=False)
    if questions is not None and answers:
        _match_turn_ids(questions, answers, location, faults)
    if faults or questions is None or story is None:
        return None, [], faults
    turns = [Turn(text, answers[tid][1] if answers else None) for tid, (_, text) in questions.items()]
    locations = [f"{location}.questions[{index}]" for index, _ in questions.values()]
    return Passage(story.strip(), turns, location), locations, faults


def _coqa_turns(record: dict, key: str, location: str, faults: list, *, required: bool):
    """``{turn_id: (index, input_text)}`` in file order, or None on any fault ({} when absent)."""
    if not required and record.get(key) in (None, []):
        return {}
    entries = _field(record, key, list, location, faults, required=required)
    if entries is None:
        return None
    turns: dict[int, tuple[int, str]] = {}
    before = len(faults)
    for index, entry in enumerate(entries):
        where = f"{location}.{key}[{index}]"
        if _object(entry, where, faults) is None:
            continue
        turn_id = _field(entry, "turn_id", int, where, faults)
        text = _field(entry, "input_text", str, where, faults)
        if turn_id in turns:
            faults.append((where, f"turn_id {turn_id} repeats {location}.{key}[{turns[turn_id][0]}]"))
        elif turn_id is not None and text is not None:
            turns[turn_id] = (index, text.strip())
    return turns if len(faults) == before else None


def _match_turn_ids(questions: dict, answers: dict, location: str, faults: list) -> None:
    for turn_id, (index, _) in answers.items():
        if turn_id not in questions:
            faults.append((f"{location}.answers[{index}]", f"turn_id {turn_id} matches no question"))
    for turn_id, (index, _) in questions.items():
        if turn_id not in answers:
            faults.append((f"{location}.questions[{index}]", f"no answer with turn_id {turn_id}"))


def _read_squad(articles: list) -> _Parsed:
    # Each paragraph is a passage: a fault skips that paragraph, not the whole article.
    parsed = _Parsed("squad", records=len(articles))
    for index, article in enumerate(articles):
        location = f"data[{index}]"
        faults: list[tuple[str, str]] = []
        paragraphs = _object(article, location, faults) and _field(article, "paragraphs", list, location, faults)
        if not paragraphs:
            _keep(parsed, location, None, [], faults)
            continue
        for number, paragraph in enumerate(paragraphs):
            where = f"{location}.paragraphs[{number}]"
            _keep(parsed, where, *_read_squad_paragraph(paragraph, where), held=_listed(paragraph, "qas"))
    return parsed


def _read_squad_paragraph(paragraph: Any, location: str):
    faults: list[tuple[str, str]] = []
    if _object(paragraph, location, faults) is None:
        return None, [], faults
    context = _field(paragraph, "context", str, location, faults)
    qas = _field(paragraph, "qas", list, location, faults)
    turns, locations = [], []
    for index, qa in enumerate(qas or []):
        where = f"{location}.qas[{index}]"
        turn = _read_squad_qa(qa, where, context, faults)
        if turn is not None:
            turns.append(turn)
            locations.append(where)
    if faults or context is None:
        return None, [], faults
    return Passage(context.strip(), turns, location), locations, faults


def _read_squad_qa(qa: Any, location: str, context: str | None, faults: list) -> Turn | None:
    if _object(qa, location, faults) is None:
        return None
    question = _field(qa, "question", str, location, faults)
    before = len(faults)
    impossible = _field(qa, "is_impossible", bool, location, faults, required=False)
    if len(faults) > before:  # unknown whether answers are required: checking them would only add noise
        return None
    if impossible:
        return Turn(question.strip(), NO_ANSWER) if question else None
    answers = _field(qa, "answers", list, location, faults)
    texts = [_read_squad_answer(a, f"{location}.answers[{i}]", context, faults) for i, a in enumerate(answers or [])]
    if question is None or not texts or None in texts:
        return None
    return Turn(question.strip(), texts[0].strip())


def _read_squad_answer(answer: Any, location: str, context: str | None, faults: list) -> str | None:
    if _object(answer, location, faults) is None:
        return None
    text = _field(answer, "text", str, location, faults)
    start = _field(answer, "answer_start", int, location, faults)
    if text is None or start is None or context is None:
        return None
    if not 0 <= start < len(context):
        faults.append((location, f"answer_start {start} is outside the context ({len(context)} characters)"))
        return None
    found = context[start : start + len(text)]
    if found != text:
        faults.append((location, f"answer_start {start} does not point at {_quote(text)} (the context there reads {_quote(found)})"))
        return None
    return text


def _read_flat(records: list[tuple[str, Any]]) -> _Parsed:
    """Flat question records ``(location, record)``, one question each: ``{"context", "question",
    "answer"?}``, or SQuAD as Hugging Face ``datasets`` writes it (``Dataset.to_json``: ``{"id", "title",
    "context", "question", "answers": {"text": [...], "answer_start": [...]}}``, where an empty ``text``
    is unanswerable, as in SQuAD v2.0). Records that share a context (same text after stripping)
    become one passage, in order of first appearance."""
    parsed = _Parsed("flat-qa", records=len(records))
    passages: dict[str, tuple[Passage, list[str]]] = {}
    for location, record in records:
        faults: list[tuple[str, str]] = []
        turn = None
        if _object(record, location, faults) is not None:
            context = _field(record, "context", str, location, faults)
            question = _field(record, "question", str, location, faults)
            if isinstance(record.get("answers"), dict):
                answer = _read_hf_answers(record["answers"], _child(location, "answers"), context, faults)
            else:
                answer = _field(record, "answer", str, location, faults, required=False) if record.get("answer") is not None else None
            if not faults:
                turn = (context.strip(), Turn(question.strip(), answer.strip() if answer is not None else None))
        parsed.faults.extend(faults)
        if turn is None:
            parsed.skipped += 1
            parsed.skipped_questions += 1
            continue
        context, one = turn
        if context not in passages:
            passages[context] = (Passage(context, [], location), [])
        passage, locations = passages[context]
        passage.turns.append(one)
        locations.append(location)
    for passage, locations in passages.values():
        parsed.items.append(passage)
        parsed.sources.append(passage.source)
        parsed.turn_locations.append(locations)
    return parsed


def _read_hf_answers(answers: dict, location: str, context: str | None, faults: list) -> str | None:
    """``{"text": [...], "answer_start": [...]}``: the first answer, checked against the context as
    SQuAD's are; ``"unknown"`` when ``text`` is empty (unanswerable)."""
    texts, starts = answers.get("text"), answers.get("answer_start")
    if not isinstance(texts, list) or not isinstance(starts, list):
        faults.append((location, 'expected {"text": [...], "answer_start": [...]}'))
        return None
    if not texts:
        return NO_ANSWER
    if len(starts) != len(texts):
        faults.append((location, f'{len(texts)} "text" but {len(starts)} "answer_start"'))
        return None
    return _read_squad_answer({"text": texts[0], "answer_start": starts[0]}, location, context, faults)


def _read_lines(lines: list[tuple[int, Any]], read_records: Callable[[list[tuple[str, Any]]], _Parsed]) -> _Parsed:
    """JSON Lines records read by ``read_records``, with each line that is not JSON as a fault of its own."""
    good = [(n, v) for n, v in lines if not isinstance(v, json.JSONDecodeError)]
    bad = [(n, v.msg if isinstance(v, _LineFault) else f"invalid JSON ({v.msg} at column {v.colno})")
           for n, v in lines if isinstance(v, json.JSONDecodeError)]
    return read_numbered("line", good, bad, read_records)


def read_numbered(unit: str, records: list[tuple[int, Any]], bad: list[tuple[int, str]],
                  read_records: Callable[[list[tuple[str, Any]]], _Parsed]) -> _Parsed:
    """Records numbered by ``unit`` (a file's ``line``, a table's ``row``) read by ``read_records``, and
    each one that could not be read, ``(number, why)``, as a skipped record and a fault of its own; the
    faults in the file's order."""
    parsed = read_records([(f"{unit} {n}", v) for n, v in records])
    parsed.records += len(bad)
    parsed.skipped += len(bad)
    parsed.faults = sorted(parsed.faults + [(f"{unit} {n}", why) for n, why in bad],
                           key=lambda fault: _number(fault[0]))
    return parsed


def _number(location: str) -> int:
    return int(re.match(r"\w+ (\d+)", location).group(1))


def _read_chat_records(records: list[tuple[str, Any]]) -> _Parsed:
    """Conversations, in the layout of the first record that is an object: chat JSONL's
    ``{"messages"}``, Alpaca's ``{"instruction", "input", "output"}`` or ShareGPT's ``{"conversations"}``."""
    first = next((record for _, record in records if isinstance(record, dict)), None)
    fmt = conversation_layout(first) or "chat-jsonl"
    read_one = _CONVERSATION_LAYOUTS[fmt][1]
    parsed = _Parsed(fmt, records=len(records))
    for location, record in records:
        _keep(parsed, location, *read_one(record, location))
    return parsed


def conversation_layout(record: Any) -> str | None:
    """The conversation format a record is laid out in (``chat-jsonl``, ``alpaca``, ``sharegpt``,
    ``pairs``), or None."""
    keys = set(record) if isinstance(record, dict) else set()
    return next((fmt for fmt, (laid_out, _) in _CONVERSATION_LAYOUTS.items() if laid_out(keys)), None)


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "system": "system"}
"""ShareGPT's ``from`` values (as LLaMA-Factory and FastChat write them) and our roles."""


def _read_alpaca_record(record: Any, location: str):
    """``{"instruction", "input"?, "output", "system"?, "history"?: [[user, assistant], ...]}``: the
    instruction, then the input after a blank line, is the user's message and the output the reply."""
    faults: list[tuple[str, str]] = []
    if _object(record, location, faults) is None:
        return None, [], faults
    instruction = _field(record, "instruction", str, location, faults)
    extra = _optional_text(record, "input", location, faults)
    output = _field(record, "output", str, location, faults)
    system = _optional_text(record, "system", location, faults)
    history = _alpaca_history(record, location, faults)
    if faults:
        return None, [], faults
    conversation = [{"role": "system", "content": system}] if system else []
    locations = [_child(location, "system")] if system else []
    for index, (asked, answered) in enumerate(history):
        conversation += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
        locations += [_child(location, f"history[{index}][0]"), _child(location, f"history[{index}][1]")]
    user = instruction.strip() + (f"\n\n{extra.strip()}" if extra else "")
    conversation += [{"role": "user", "content": user}, {"role": "assistant", "content": output.strip()}]
    return conversation, locations + [_child(location, "instruction"), _child(location, "output")], faults


def _optional_text(record: dict, key: str, location: str, faults: list) -> str | None:
    """An optional string field: absent, null or blank reads as None."""
    value = record.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _field(record, key, str, location, faults)


def _alpaca_history(record: dict, location: str, faults: list) -> list[tuple[str, str]]:
    if record.get("history") in (None, []):
        return []
    pairs = _field(record, "history", list, location, faults) or []
    history = []
    for index, pair in enumerate(pairs):
        where = _child(location, f"history[{index}]")
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) and t.strip() for t in pair)):
            faults.append((where, "expected [user message, reply]: two non-empty strings"))
        elif all(_text_ok(text, where, faults) for text in pair):
            history.append((pair[0].strip(), pair[1].strip()))
    return history


def _read_sharegpt_record(record: Any, location: str):
    """``{"conversations": [{"from": "human" | "gpt" | "system" ..., "value"}], "system"?}``; a turn may
    be ``{"role", "content"}`` instead."""
    faults: list[tuple[str, str]] = []
    if _object(record, location, faults) is None:
        return None, [], faults
    turns = _field(record, "conversations", list, location, faults)
    system = _optional_text(record, "system", location, faults)
    conversation = [{"role": "system", "content": system}] if system else []
    locations = [_child(location, "system")] if system else []
    for index, turn in enumerate(turns or []):
        where = _child(location, f"conversations[{index}]")
        if _object(turn, where, faults) is None:
            continue
        # (some datasets write each turn as chat messages are, {"role", "content"}: read those alike)
        speaker_key, value_key = ("role", "content") if "from" not in turn and "role" in turn else ("from", "value")
        speaker = _field(turn, speaker_key, str, where, faults)
        value = _field(turn, value_key, str, where, faults)
        role = SHAREGPT_ROLES.get((speaker or "").strip().lower())
        if speaker is not None and role is None:
            faults.append((_child(where, speaker_key), f'expected "human", "gpt" or "system", got {_quote(speaker)}'))
        elif role is not None and value is not None:
            conversation.append({"role": role, "content": value.strip()})
            locations.append(where)
    if not faults and turns:
        faults.extend(_missing_roles(conversation, location, {"user": '"human"', "assistant": '"gpt"'}))
    return (None, [], faults) if faults else (conversation, locations, faults)


def _missing_roles(conversation: list[dict], location: str, names: dict[str, str]) -> list[tuple[str, str]]:
    """A fault for each of the user's and the assistant's roles the conversation has no message of."""
    roles = {message["role"] for message in conversation}
    return [(location, f"no {names[role]} message") for role in ("user", "assistant") if role not in roles]


def _read_chat_record(record: Any, location: str):
    faults: list[tuple[str, str]] = []
    if _object(record, location, faults) is None:
        return None, [], faults
    messages = _field(record, "messages", list, location, faults)
    if record.get("meta") is not None:
        _field(record, "meta", dict, location, faults)
    conversation, locations = _read_messages(messages or [], location, "messages", faults)
    if not faults and messages:
        faults.extend(_missing_roles(conversation, location, {"user": '"user"', "assistant": '"assistant"'}))
    if faults:
        return None, [], faults
    return conversation, locations, faults


def _read_messages(messages: list, location: str, key: str, faults: list) -> tuple[list[dict], list[str]]:
    """``[{"role", "content"}, ...]`` under ``key`` of a record: the messages and their locations; each
    fault is added to ``faults``."""
    conversation, locations = [], []
    for index, message in enumerate(messages):
        where = _child(location, f"{key}[{index}]")
        if _object(message, where, faults) is None:
            continue
        role = _field(message, "role", str, where, faults)
        content = _text_parts(message, where, faults) if isinstance(message.get("content"), list) else \
            _field(message, "content", str, where, faults)
        if role is not None and role not in ROLES:
            faults.append((_child(where, "role"), f'expected "system", "user" or "assistant", got {_quote(role)}'))
        conversation.append({"role": role, "content": content})
        locations.append(where)
    return conversation, locations


def _text_parts(message: dict, location: str, faults: list) -> str | None:
    """A message's ``content`` given as OpenAI's list of parts, ``[{"type": "text", "text": ...}]``:
    the texts joined by blank lines. Only text can be trained on: any other part (an image, audio)
    is a fault."""
    texts = []
    for index, part in enumerate(message["content"]):
        where = _child(location, f"content[{index}]")
        if _object(part, where, faults) is None:
            continue
        if part.get("type") != "text":
            faults.append((_child(where, "type"), f'expected "text" (only text is trained on), got {_quote(str(part.get("type")))}'))
            continue
        text = _field(part, "text", str, where, faults)
        if text is not None:
            texts.append(text.strip())
    if not message["content"]:
        faults.append((location, 'empty "content"'))
    return "\n\n".join(texts) if texts and len(texts) == len(message["content"]) else None


PAIRS = (("prompt", "completion"), ("prompt", "response"), ("question", "answer"), ("input", "output"))
"""A message and its reply, as one record's two fields: OpenAI's and TRL's ``{"prompt", "completion"}``,
``{"prompt", "response"}``, a spreadsheet of FAQs' ``question, answer`` (a record with a ``context``
is a flat QA question instead), ``{"input", "output"}``."""


def _pair_of(record: dict) -> tuple[str, str] | None:
    return next((pair for pair in PAIRS if set(pair) <= set(record)), None) if "context" not in record else None


def _read_pair_record(record: Any, location: str):
    """A message and its reply in two fields (``PAIRS``), ``"system"`` optional: a one-turn conversation;
    or, as TRL's conversational prompt-completion, two lists of ``{"role", "content"}`` messages. A
    record whose ``label`` is false (TRL's unpaired preference data, for KTO) is not trained on."""
    faults: list[tuple[str, str]] = []
    if _object(record, location, faults) is None:
        return None, [], faults
    pair = _pair_of(record)
    if pair is None:
        faults.append((location, f"expected the fields {' and '.join(_quote(k) for k in PAIRS[0])} (or "
                                 f"{', '.join(' and '.join(_quote(k) for k in p) for p in PAIRS[1:])})"))
        return None, [], faults
    if record.get("label") is False:  # TRL's unpaired preference data (KTO): a completion marked undesirable
        faults.append((_child(location, "label"), "false: a completion marked undesirable (KTO data) is not trained on"))
        return None, [], faults
    if all(isinstance(record[key], list) for key in pair):  # TRL's conversational prompt-completion
        prompt, prompt_at = _read_messages(record[pair[0]], location, pair[0], faults)
        reply, reply_at = _read_messages(record[pair[1]], location, pair[1], faults)
        if not faults:
            faults.extend(_missing_roles(prompt + reply, location, {"user": '"user"', "assistant": '"assistant"'}))
        return (None, [], faults) if faults else (prompt + reply, prompt_at + reply_at, faults)
    asked, answered = (_field(record, key, str, location, faults) for key in pair)
    system = _optional_text(record, "system", location, faults)
    if faults:
        return None, [], faults
    conversation = [{"role": "system", "content": system}] if system else []
    conversation += [{"role": "user", "content": asked.strip()}, {"role": "assistant", "content": answered.strip()}]
    locations = [_child(location, "system")] if system else []
    return conversation, locations + [_child(location, key) for key in pair], faults


_TRANSCRIPT_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]*")
"""A turn of a transcript in one string, as Anthropic/hh-rlhf writes ``chosen``: "\\n\\nHuman: ..."."""


def _transcript(text: str) -> list[dict] | None:
    """The messages of a ``Human:``/``Assistant:`` transcript; None for text that is not one."""
    pieces = _TRANSCRIPT_TURN.split(text.lstrip("\n"))
    if len(pieces) < 3 or pieces[0].strip():
        return None
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[who], "content": said.strip()} for who, said in zip(pieces[1::2], pieces[2::2])]


def _read_preference_record(record: Any, location: str):
    """A preference pair's chosen conversation (the rejected reply is not trained on): ``chosen`` as a
    ``Human:``/``Assistant:`` transcript (Anthropic/hh-rlhf), as a list of messages (TRL's preference
    data, with or without a separate ``prompt``), or as the reply to a ``prompt`` or ``question`` given
    as text (``system`` optional, as Intel/orca_dpo_pairs)."""
    faults: list[tuple[str, str]] = []
    if _object(record, location, faults) is None:
        return None, [], faults
    chosen, at = record.get("chosen"), _child(location, "chosen")
    asked = next((key for key in ("prompt", "question") if key in record), None)
    conversation, locations = [], []
    if isinstance(record.get(asked), list):
        conversation, locations = _read_messages(record[asked], location, asked, faults)
    elif asked is not None:
        system = _optional_text(record, "system", location, faults)
        text = _field(record, asked, str, location, faults)
        if text is not None and isinstance(chosen, str) and _transcript(text + chosen):  # a transcript cut in two
            chosen, asked = text + chosen, None
        elif text is not None:
            conversation = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": text.strip()}]
            locations = ([_child(location, "system")] if system else []) + [_child(location, asked)]
    if isinstance(chosen, list):
        reply, reply_at = _read_messages(chosen, location, "chosen", faults)
    elif isinstance(chosen, str) and asked is None:
        reply = _transcript(chosen)
        if reply is None:
            faults.append((at, 'expected a "Human:" and "Assistant:" transcript, or a "prompt" beside it'))
        reply_at = [at] * len(reply or [])
    elif isinstance(chosen, str) and chosen.strip():
        reply, reply_at = [{"role": "assistant", "content": chosen.strip()}], [at]
    else:
        faults.append((at, f"expected text or a list of messages, got {_type_name(chosen)}"))
        reply, reply_at = [], []
    conversation, locations = conversation + (reply or []), locations + reply_at
    if not faults:
        faults.extend(_missing_roles(conversation, location, {"user": "user", "assistant": "assistant"}))
    if not faults and not conversation[-1]["content"]:
        faults.append((locations[-1], "the chosen reply is empty"))
    return (None, [], faults) if faults else (conversation, locations, faults)


_CONVERSATION_LAYOUTS = {"chat-jsonl": (lambda keys: "messages" in keys, _read_chat_record),
                         "alpaca": (lambda keys: {"instruction", "output"} <= keys, _read_alpaca_record),
                         "sharegpt": (lambda keys: "conversations" in keys, _read_sharegpt_record),
                         "preference": (lambda keys: "chosen" in keys, _read_preference_record),
                         "pairs": (lambda keys: _pair_of(keys) is not None, _read_pair_record)}
"""Each conversation format: whether a record's keys are laid out in it, and its record reader."""
