"""Readers and validators that turn an uploaded data file into training examples, with a report.

The format (official CoQA, simplified CoQA, SQuAD v1.1/v2.0, flat QA, chat JSONL) is detected from
the content; the report names every fault by location before anything trains.
Run: ``python -m convo.data FILE [--task qg|cqg|qa|qa_closed|chat]`` to print the report.

Decisions a caller should know:

* ``Report.ok`` is True when the file was read, at least one valid example remains for the task,
  and no whole-file error stopped it. Per-record ``faults`` are then *warnings*: the records (or
  SQuAD paragraphs, or chat lines) at fault are skipped and counted in ``Report.skipped``.
* A whole-file rejection (empty, too big, not UTF-8, binary, invalid JSON, too deep, unknown
  format) sets ``Report.error`` and leaves that one message as the only fault.
* Validation only reads: it writes no file, cache or temp file anywhere.
* Every check runs in time and memory linear in the file (one parse, linear scans), with hard caps
  on the work per upload (``MAX_BYTES``, ``MAX_WORK``, ``MAX_VALUES``; ``max_bytes=None`` lifts them
  for a file named on one's own machine) and per passage (``MAX_TURNS``); token lengths are measured
  on a sample of at most ``TOKEN_SAMPLE`` examples, and the report says when they are an estimate.

The package: base (limits, errors, records, prompt wording), sentences (the spans a question is about),
tasks (task prompts, their rendering and the examples), checks (field
checks), formats (one reader per format), parquet (Parquet and Arrow rows as records), saved (folders
written by datasets' save_to_disk), report (counts, duplicates, token lengths, summary),
pipeline (the entry points). Its names are re-exported here.
"""
from __future__ import annotations

from .base import (Conversation, CONVERSATION_PROMPT, CQG_SYSTEM, Data, DataError, DEFAULT_TASKS, END_MARKERS,
                   FAULT_LIMIT, FEWSHOT_INSTRUCTION, FEWSHOT_ROLE, FEWSHOT_SHOTS, FORMAT_NAMES, FORMATS, MAX_BYTES,
                   MAX_DEPTH, MAX_TURNS, MAX_VALUES, MAX_WORK, MB, MEASURE_CHARS,
                   Message, NO_ANSWER, NO_HISTORY, Passage, PASSAGE_PROMPT, QA_CLOSED_SYSTEM, QA_SYSTEM, QG_SYSTEM,
                   QUESTION_PROMPT, ROLES, SUMMARY_FAULTS, TASK_PROMPT_STYLES, TASKS, TOKEN_SAMPLE, TokenStats, Turn,
                   UNRECOGNISED)
from .sentences import focus_unit, sentence_units, split_sentences
from .tasks import (build_examples, cqg_prompt, end_marker, fewshot_text, format_history, is_fewshot, qa_closed_prompt,
                    qa_prompt, qg_fewshot_prompt, qg_prompt, render, render_fewshot, split_train_val)
from .report import (render_example, Report, token_counter)
from .parquet import arrow_rows, is_arrow, is_parquet, parquet_rows
from .pipeline import (decode_marked, json_depth, load_data, load_examples, validate_bytes, validate_file)
