"""The public entry points (validate_file, load_examples, load_data, split_train_val) and the pipeline behind them."""
from __future__ import annotations

import hashlib
import json
import re
import time
from itertools import accumulate
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .base import (CHAT_FORMATS, Conversation, DEFAULT_TASKS, Data, DataError, MAX_BYTES, MAX_DEPTH, MAX_VALUES, MAX_WORK, MB,
                   UNRECOGNISED, _Duplicates, _LineFault, _Parsed)
from .tasks import _check_task, _examples_with_sources
from .packed import _TRAINING_DATA, _packed_reason, gunzipped
from .saved import joined_arrow, saved_files
from .parquet import arrow_rows, is_arrow, is_parquet, parquet_rows
from .tables import is_table, is_workbook, table_rows, workbook_rows
from .checks import _quote, _safe, _type_name
from .formats import (_read_chat_records, _read_coqa_record, _read_flat, _read_lines, _read_passages, _read_records,
                      _read_squad, conversation_layout, passage_layout, read_numbered, telling_record)
from .report import (Report, _broken_questions_error, _count, _dedupe, _fault_lines, _flag_non_questions, _measure,
                     _usability_error)


def validate_file(
    path: str | Path,
    *,
    task: str | None = None,
    tokenizer: Any = None,
    max_length: int = 1024,
    max_bytes: int | None = MAX_BYTES,
    adapt_task: bool = False,
) -> Report:
    """Read and check a data file; never raises for bad content (see ``Report.ok``).

    ``tokenizer`` may be a Hugging Face tokenizer, anything whose ``encode``/``__call__`` returns
    token ids, or a plain ``count_tokens(text) -> int``. ``task`` picks which examples the token
    statistics measure (default: ``qg`` for QA formats, ``chat`` for chat). With ``adapt_task`` a
    ``task`` that does not fit the file (chat on passages, a QA task on chats) is replaced by the
    format's default, so a caller needs one parse, not a probe first.

    ``max_bytes`` and the caps on what one file may hold (``MAX_WORK`` records, questions and
    messages; ``MAX_VALUES`` JSON values) bound the work of an upload to a shared server. Pass
    ``max_bytes=None`` for a file someone named on their own machine (the command line, the Python
    API, a training job whose upload was checked): no cap then, so the official CoQA and SQuAD
    training files (30-49 MB, 88-130k questions) read.
    """
    return _inspect_file(path, task, tokenizer, max_length, max_bytes, adapt_task)[0]


def validate_bytes(
    data: bytes,
    name: str,
    *,
    task: str | None = None,
    tokenizer: Any = None,
    max_length: int = 1024,
    max_bytes: int | None = MAX_BYTES,
) -> Report:
    """Like :func:`validate_file` for content already in memory; ``name`` labels the report."""
    return _inspect_bytes(data, name, task, tokenizer, max_length, max_bytes)[0]


def load_data(
    path: str | Path,
    *,
    task: str | None = None,
    tokenizer: Any = None,
    max_length: int = 1024,
    max_bytes: int | None = MAX_BYTES,
) -> tuple[Data, Report]:
    """Validated passages (QA formats) or conversations (chat) and the report.

    Raises :class:`DataError` when the file cannot be used.
    """
    report, data, _ = _inspect_file(path, task, tokenizer, max_length, max_bytes)
    if not report.ok:
        raise DataError(report)
    return data, report


def load_examples(
    path: str | Path,
    task: str | None,
    *,
    tokenizer: Any = None,
    max_length: int = 1024,
    max_bytes: int | None = MAX_BYTES,
) -> tuple[list[Conversation], Report]:
    """Training examples for ``task`` from a data file, and its report; with ``task=None`` the
    format's default task (``report.task`` says which), from the same single parse.

    Raises :class:`DataError` when the file is rejected or yields no example for ``task``.
    """
    if task is not None:
        _check_task(task)
    report, _, examples = _inspect_file(path, task, tokenizer, max_length, max_bytes)
    if not report.ok:
        raise DataError(report)
    return [example for _, example in examples], report


# --------------------------------------------------------------------------- the pipeline


class _Reject(Exception):
    """A whole-file problem: one message, no further reading."""


def _inspect_file(path, task, tokenizer, max_length, max_bytes, adapt_task=False):
    _check_limits(task, max_length, max_bytes)
    path = Path(path)
    if not path.exists():  # a mistyped name: said in the report's words, not FileNotFoundError's traceback
        return _rejected(Report(name=_safe(path.name), size=0, max_length=max_length),
                         f"no such file or folder: {_safe(str(path))}"), [], []
    folder = path.is_dir()
    files = [path]
    if folder:  # a dataset saved by datasets' save_to_disk: its (train) split's Arrow files
        try:
            files = saved_files(path)
        except ValueError as exc:
            return _rejected(Report(name=path.name, size=0, max_length=max_length), f"folder {exc}"), [], []
    size = sum(file.stat().st_size for file in files)
    if max_bytes is not None and size > max_bytes:
        # Refuse before reading: an accidental multi-GB upload must not fill memory.
        report = Report(name=path.name, size=size, max_length=max_length)
        return _rejected(report, _size_message(size, max_bytes)), [], []
    try:
        data = joined_arrow(files) if folder else path.read_bytes()
    except ValueError as exc:
        return _rejected(Report(name=path.name, size=size, max_length=max_length), f"folder {exc}"), [], []
    return _inspect_bytes(data, path.name, task, tokenizer, max_length, max_bytes, adapt_task)


def _inspect_bytes(data: bytes, name: str, task, tokenizer, max_length, max_bytes, adapt_task=False):
    _check_limits(task, max_length, max_bytes)
    report = Report(name=_safe(name), size=len(data), max_length=max_length)
    if max_bytes is not None and len(data) > max_bytes:
        return _rejected(report, _size_message(len(data), max_bytes)), [], []
    report.sha256 = hashlib.sha256(data).hexdigest()
    try:
        data, name = gunzipped(data, name, max_bytes)
    except ValueError as exc:
        return _rejected(report, f"file {exc}"), [], []
    workbook = is_workbook(name, data)
    if not workbook and (packed := _packed_reason(data, name)) is not None:
        return _rejected(report, packed), [], []
    try:
        if is_parquet(data) or is_arrow(data):
            parsed = _parse_columnar(data, max_bytes)
        elif workbook or is_table(name):
            parsed = _parse_table(data, name, workbook, max_bytes)
        else:
            parsed = _parse(_decode(data), capped=max_bytes is not None)
    except _Reject as reject:
        return _rejected(report, str(reject)), [], []
    report.format = parsed.format
    if task and adapt_task and (task == "chat") != (parsed.format in CHAT_FORMATS):
        task = None
    report.task = task or DEFAULT_TASKS[parsed.format]
    _count(report, parsed)
    broken = _flag_non_questions(parsed)
    faults = parsed.faults + _dedupe(parsed, report)
    error = _broken_questions_error(broken) or _usability_error(parsed, report.task, report.skipped)
    examples = [] if error else _examples_with_sources(parsed.items, report.task, parsed.sources)
    if not error and not examples:
        error = f'task "{report.task}" needs answers, but no question in this file has one'
    report.examples = len(examples)
    report.faults = _fault_lines(faults)
    report.fault_count = len(faults) + (error is not None)
    if error:
        return _rejected(report, error), [], []
    report.ok = True
    _measure(report, examples, tokenizer, max_length)
    return report, parsed.items, examples


def _check_limits(task, max_length, max_bytes) -> None:
    if task is not None:
        _check_task(task)
    if max_length < 1 or (max_bytes is not None and max_bytes < 1):
        raise ValueError(f"max_length and max_bytes must be positive, got {max_length} and {max_bytes}")


def _rejected(report: Report, error: str) -> Report:
    error = _safe(error)
    report.ok = False
    report.error = error
    report.faults = [error] + report.faults
    report.fault_count = max(report.fault_count, 1)
    return report


def _size_message(size: int, limit: int) -> str:
    # Show enough decimals that a file just over the cap does not read as "20.0 MB, over 20.0 MB".
    digits = 1
    while digits < 6 and f"{size / MB:.{digits}f}" == f"{limit / MB:.{digits}f}":
        digits += 1
    return f"file is {size / MB:.{digits}f} MB, over the {limit / MB:.{digits}f} MB limit"


# Byte-order marks, longest first: a UTF-32-LE mark starts like a UTF-16-LE one.
_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32-LE", "utf-32"), (b"\x00\x00\xfe\xff", "UTF-32-BE", "utf-32"),
         (b"\xff\xfe", "UTF-16-LE", "utf-16"), (b"\xfe\xff", "UTF-16-BE", "utf-16"))


def decode_marked(data: bytes) -> str | None:
    """The text of a file that starts with a UTF-16 or UTF-32 byte-order mark, as Windows editors
    (Notepad's "Unicode") and PowerShell save them; None when it starts with none. A file whose rest is
    not valid in that encoding raises ``ValueError`` saying so.

    >>> decode_marked("Café?".encode("utf-16")), decode_marked(b"plain")
    ('Café?', None)
    """
    bom = next((entry for entry in _BOMS if data.startswith(entry[0])), None)
    if bom is None:
        return None
    _, name, codec = bom
    try:
        return data.decode(codec)
    except UnicodeDecodeError as err:
        raise ValueError(f"starts with a {name} byte-order mark but is not valid {name} text "
                         f"(at offset {err.start})") from None


def _decode(data: bytes, kind: str = "JSON text", fallback: str | None = None) -> str:
    # Files saved as UTF-16/32 (Windows editors, PowerShell) carry a byte-order mark: read them.
    # ``fallback``: the encoding of a file that is not UTF-8 (Excel saves "CSV (Comma delimited)" in
    # the Windows code page, cp1252 in Western locales; only "CSV UTF-8" is UTF-8).
    try:
        text = decode_marked(data)
    except ValueError as err:
        raise _Reject(f"file {err}") from None
    if text is not None:
        if not text.strip():
            raise _Reject("file is empty")
        return text
    if not data.removeprefix(b"\xef\xbb\xbf").strip():
        raise _Reject("file is empty")
    if b"\x00" in data:
        raise _Reject(f"file looks binary, not {kind}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        if fallback:
            try:
                return data.decode(fallback)
            except UnicodeDecodeError:
                pass
        also = f" or {fallback}" if fallback else ""
        raise _Reject(f"file is not UTF-8{also} text (invalid byte 0x{data[err.start]:02x} at offset "
                      f"{err.start})") from None
    return text.removeprefix("\ufeff")  # Windows editors add a UTF-8 byte-order mark


# A string, or an unterminated one up to the end: possessive quantifiers never backtrack, and an
# unterminated string is consumed once, so the scan is linear (the old pattern retried from every
# quote of an unterminated run of escaped quotes: quadratic, seconds for 80 kB, GIL held).
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.S)
_NOT_BRACKET_BYTES = bytes(set(range(256)) - set(b"[]{}"))
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_CHUNK = 500_000


def json_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """Deepest bracket nesting in JSON text, found by scanning, without parsing.

    Stops counting once past ``limit``. Used before ``json.loads`` so a hostile file cannot
    drive the parser into its recursion limit.

    >>> json_depth('{"a": [[1], "]]]"]}')
    3
    """
    return _structure(text, limit)[0]


def _structure(text: str, limit: int = MAX_DEPTH, max_values: int | None = None) -> tuple[int, int]:
    """(deepest nesting, number of strings, objects and lists), by linear scans without parsing.
    Past ``max_values`` values the depth is not measured (the file is refused for its size anyway).

    The scans run on pieces of about ``_CHUNK`` characters, cut at line ends (a JSON string holds
    no raw line break), with a pause between pieces, so no single C call holds the GIL for long
    and other requests are served meanwhile."""
    if max_values is not None:
        # Quotes that are not escaped come in pairs: a cheap count refuses a file of millions of
        # strings before the regex scan, which holds the GIL for a whole line.
        quotes = text.count('"') - text.count('\\"') + text.count('\\\\"')
        if quotes // 2 > max_values:
            return 0, quotes // 2
    brackets, strings = [], 0
    for number, piece in enumerate(_line_chunks(text)):
        if number:  # a pause between pieces only: a sleep(0) costs about 60 us (the kernel's timer
            time.sleep(0)  # slack), and one after each line of a JSON Lines file was 60% of reading it
        outside, count = _STRING.subn("", piece)
        strings += count
        brackets.append(outside.encode("utf-8", "surrogatepass").translate(None, _NOT_BRACKET_BYTES))
    joined = b"".join(brackets)
    del brackets
    values = strings + joined.count(b"[") + joined.count(b"{")
    if max_values is not None and values > max_values:
        return 0, values
    depth = deepest = 0
    # Running sums of +1/-1 steps computed in C (map, accumulate, max), chunk by chunk so other
    # threads get the GIL in between: about a second for a 20 MB file made only of brackets.
    for start in range(0, len(joined), _CHUNK):
        if start:
            time.sleep(0)
        sums = list(accumulate(map(_STEP.__getitem__, joined[start : start + _CHUNK]), initial=depth))
        deepest = max(deepest, max(sums))
        depth = sums[-1]
        if deepest > limit:
            break
    return deepest, values


def _line_chunks(text: str) -> Iterator[str]:
    start = 0
    while start < len(text):
        end = text.find("\n", start + _CHUNK)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _object_from_pairs(pairs: list[tuple[str, Any]]) -> dict:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    seen: set[str] = set()
    marked = _Duplicates(value)
    marked.repeated = sorted({key for key, _ in pairs if key in seen or seen.add(key)})
    return marked


def _loads(text: str) -> Any:
    """``json.loads`` that notes repeated keys (see :class:`_Duplicates`)."""
    return json.loads(text, object_pairs_hook=_object_from_pairs)


def _parse(text: str, capped: bool = True) -> _Parsed:
    too_deep = f"JSON is nested deeper than {MAX_DEPTH} levels"
    depth, values = _structure(text, max_values=MAX_VALUES if capped else None)
    if capped and values > MAX_VALUES:
        raise _Reject(f"file holds {values:,} JSON strings, objects and lists, over the limit of {MAX_VALUES:,} "
                      "per upload: split it into smaller files")
    problem = too_deep if depth > MAX_DEPTH else None
    if problem is None:
        try:
            value = _loads(text)
            if capped:
                _check_work(_work(value))
            return _read_value(value)
        except RecursionError:  # brackets the scan could not see as nesting (unbalanced): still refused
            problem = too_deep
        except json.JSONDecodeError as err:
            problem = f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}{_json_hint(err)}"
            first = text.lstrip()[:1]  # markup, or prose refused at its first letter: not JSON at all
            if first == "<" or first.isalpha() and err.pos == len(text) - len(text.lstrip()):
                problem = (f"file is {'HTML (a web page)' if first == '<' else 'plain text'}, not JSON "
                           f"training data: {_TRAINING_DATA}")
        except ValueError as err:  # e.g. an integer of more than 4300 digits
            raise _Reject(f"JSON holds a value Python cannot read: {err}") from None
    # Not one JSON document: JSON Lines, where each line is checked (depth included) on its own.
    lines = _jsonl_lines(text)
    if lines is None:
        raise _Reject(problem)
    if capped:
        _check_work(_work([value for _, value in lines]))
    reader = _records_reader([value for _, value in lines])
    if reader is None:
        raise _Reject(f"{UNRECOGNISED}; found JSON Lines whose first line is {_describe(lines[0][1])}")
    return _read_lines(lines, reader)


def _records_reader(records: list) -> Callable[[list[tuple[str, Any]]], _Parsed] | None:
    """The reader of a file of one record a line or a row (JSON Lines, Parquet, CSV), by the records' layout."""
    if any(conversation_layout(record) for record in records):  # chat JSONL, Alpaca, ShareGPT, pairs, preference
        return _read_chat_records
    first = telling_record(records)  # (a first record that lost its telling key does not hide the format)
    if _flat_question(first):  # SQuAD as Hugging Face datasets writes it, or flat QA
        return _read_flat
    if passage_layout(first):  # CoQA as Hugging Face datasets writes it, or simplified CoQA
        return _read_passages
    return None


PARQUET_UNPACKED = 4
"""An uploaded Parquet file may unpack to this many times the upload limit (``max_bytes``): its
columns are compressed, and SQuAD's training split (a paragraph repeated for each of its questions)
unpacks to about 80 MB, where its JSON is 30 MB."""


def _parse_columnar(data: bytes, max_bytes: int | None) -> _Parsed:
    """The rows of a Parquet or Arrow table, read as JSON Lines records are (the Hub's ``stanfordnlp/coqa``
    and ``rajpurkar/squad`` files have the layouts ``datasets`` writes as JSON Lines); faults name rows."""
    capped = max_bytes is not None
    kind, read = ("Parquet", parquet_rows) if is_parquet(data) else ("Arrow", arrow_rows)
    try:
        rows, columns = read(data, PARQUET_UNPACKED * max_bytes if capped else None, MAX_WORK if capped else None)
    except ValueError as exc:
        raise _Reject(f"file {exc}") from None
    if not rows:
        raise _Reject(f"file has no records: the {kind} table has no rows")
    if capped:
        _check_work(_work(rows))
    reader = _records_reader(rows)
    if reader is None:
        raise _Reject(f"{UNRECOGNISED}; found {'a' if kind == 'Parquet' else 'an'} {kind} table with the columns "
                      f"{_keys(columns)}")
    return reader([(f"row {number}", row) for number, row in enumerate(rows, start=1)])


def _parse_table(data: bytes, name: str, workbook: bool, max_bytes: int | None) -> _Parsed:
    """A spreadsheet's rows read as JSON Lines records are (flat questions, Alpaca, prompt/completion...),
    faults naming its rows: a CSV or TSV file's, or an Excel workbook's first sheet (whose parts, a zip
    of XML, may unpack to PARQUET_UNPACKED times the upload limit)."""
    capped = max_bytes is not None
    try:
        most = MAX_WORK if capped else None
        rows, bad, columns = (workbook_rows(data, PARQUET_UNPACKED * max_bytes if capped else None, most) if workbook
                              else table_rows(_decode(data, "a table", fallback="cp1252"), name, most))
    except ValueError as exc:
        raise _Reject(f"file {exc}") from None
    if not rows and not bad:
        raise _Reject("file has no records: the table has no rows under its header")
    records = [record for _, record in rows]
    if capped:
        _check_work(_work(records))
    reader = _records_reader(records) if records else None
    if reader is None:
        raise _Reject(f"unrecognised columns {_keys(columns)}: a table's first row names its columns, "
                      "\"context\", \"question\" and \"answer\" (questions about a passage), \"instruction\", "
                      "\"input\" and \"output\" (Alpaca), \"prompt\" and \"completion\" or \"question\" and "
                      "\"answer\" (a message and its reply), or \"prompt\", \"chosen\" and \"rejected\" "
                      "(preference pairs)")
    return read_numbered("row", rows, bad, reader)


def _flat_question(record: Any) -> bool:
    """A flat question record: ``{"context", "question", ...}`` (not simplified CoQA's ``"questions"``)."""
    return isinstance(record, dict) and "question" in record and "context" in record and "questions" not in record


def _json_hint(err: json.JSONDecodeError) -> str:
    """What a parser error usually means, where Python's words do not say: a comma before a closing
    bracket (JavaScript and Python allow one, JSON does not).

    >>> try:
    ...     json.loads('[{"a": 1,}]')
    ... except json.JSONDecodeError as err:
    ...     print(err.msg + _json_hint(err))
    Expecting property name enclosed in double quotes (a comma before "}" ends no item: remove it)
    """
    before = err.doc[:err.pos].rstrip()
    after = err.doc[err.pos:err.pos + 1]
    if before.endswith(",") and after in ("}", "]"):
        return f' (a comma before "{after}" ends no item: remove it)'
    return ""


def _jsonl_lines(text: str) -> list[tuple[int, Any]] | None:
    """Parsed non-blank lines when the text reads as JSON Lines, else None.

    JSONL is assumed when the first non-blank line and most others are JSON objects on their
    own. A JSON file with a syntax error does not start that way: its first line is ``[`` or
    ``{`` or a first record that ends in a comma. Each line gets its own depth check.
    """
    lines = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            lines.append((number, _parse_line(line)))
    objects = sum(isinstance(value, dict) for _, value in lines)
    starts_with_object = bool(lines) and isinstance(lines[0][1], dict)
    return lines if starts_with_object and objects * 2 > len(lines) else None


def _parse_line(line: str) -> Any:
    if json_depth(line) > MAX_DEPTH:
        return _LineFault(f"JSON is nested deeper than {MAX_DEPTH} levels")
    try:
        return _loads(line)
    except RecursionError:
        return _LineFault(f"JSON is nested deeper than {MAX_DEPTH} levels")
    except json.JSONDecodeError as err:
        return err
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        return _LineFault(f"holds a value Python cannot read: {err}")


def _check_work(units: int) -> None:
    if units > MAX_WORK:
        raise _Reject(f"file holds {units:,} records, questions and messages, over the limit of {MAX_WORK:,} "
                      "per upload: split it into smaller files")


def _work(value: Any) -> int:
    """Records + questions + messages (an upper bound read from the lists' lengths), computed
    before any reading so an oversized file is refused before the per-record work."""
    if isinstance(value, dict):
        value = value.get("data") if isinstance(value.get("data"), list) else [value]
    if not isinstance(value, list):
        return 0
    units = len(value)
    for record in value:
        if isinstance(record, dict):
            for key in ("questions", "messages", "conversations", "history", "paragraphs", "answers"):
                inner = record.get(key)
                if isinstance(inner, list):
                    units += len(inner)
                    if key == "paragraphs":
                        units += sum(len(p.get("qas") or []) for p in inner if isinstance(p, dict)
                                     and isinstance(p.get("qas"), list))
    return units


def _read_value(value: Any) -> _Parsed:
    if conversation_layout(value):  # one conversation as a lone object (any conversation layout)
        return _read_chat_records([("line 1", value)])
    if isinstance(value, list):
        first = telling_record(value)
        if first is not None and conversation_layout(first):  # chat JSONL, Alpaca, ShareGPT, pairs, preference
            return _read_chat_records([(f"[{i}]", rec) for i, rec in enumerate(value)])
        if _flat_question(first):  # SQuAD as Hugging Face datasets writes it, or flat QA
            return _read_flat([(f"[{i}]", rec) for i, rec in enumerate(value)])
        if first is not None and ("story" in first or "context" in first or "questions" in first):
            # CoQA records as Hugging Face datasets writes them, or simplified CoQA
            return _read_passages([(f"[{i}]", rec) for i, rec in enumerate(value)])
        if not value:
            raise _Reject("file has no records: the top-level list is empty")
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        first = telling_record(value["data"])
        if first is not None and "story" in first:
            return _read_records(value["data"], "coqa", "data", _read_coqa_record)
        if first is not None and "paragraphs" in first:
            return _read_squad(value["data"])
        if first is not None and "question" in first and "context" in first:
            return _read_flat([(f"data[{i}]", rec) for i, rec in enumerate(value["data"])])
        if not value["data"]:
            raise _Reject('file has no records: "data" is empty')
    raise _Reject(f"{UNRECOGNISED}; found {_describe(value)}")


_KINDS = {"null": "null", "bool": "true/false", "string": "a string", "object": "an object", "list": "a list",
          "int": "a number", "float": "a number"}
_KIND_PLURALS = {"null": "nulls", "bool": "true/false values", "string": "strings", "object": "objects",
                 "list": "lists", "int": "numbers", "float": "numbers"}


def _describe(value: Any, top: bool = True) -> str:
    """What a JSON value is, for "unrecognised format" messages: ``null``, ``a JSON list of
    numbers``, ``an object with keys "a", "b"``, ``{"data": [...]} whose first record has keys ...``."""
    kind = _type_name(value)
    if isinstance(value, json.JSONDecodeError):
        return "not valid JSON"
    if isinstance(value, list):
        if not value:
            return "an empty JSON list"
        kinds = sorted({_KIND_PLURALS.get(_type_name(v), "values") for v in value[:1000]})
        first = _first_object(value)
        keys = f" (the first has keys {_keys(first)})" if first is not None else ""
        return f"a JSON list of {' and '.join(kinds)}{keys}"
    if isinstance(value, dict):
        data = value.get("data")
        if isinstance(data, list) and data and top:
            return f'{{"data": [...]}} whose records are {_describe(data, top=False).removeprefix("a JSON list of ")}'
        return f"an object with keys {_keys(value)}" if value else "an empty object"
    if isinstance(value, bool) and top:
        return "true" if value else "false"
    return _KINDS.get(kind, kind) if not top or kind == "null" else f"{_KINDS.get(kind, kind)} ({_quote(str(value), 40)})"


def _keys(record: dict, shown: int = 6) -> str:
    keys = [_quote(str(key), 30) for key in list(record)[:shown]]
    return ", ".join(keys) + (", ..." if len(record) > shown else "")


def _first_object(values: list) -> dict | None:
    return next((v for v in values if isinstance(v, dict)), None)
