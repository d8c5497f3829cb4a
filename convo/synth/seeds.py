"""Seed messages for persona runs: typed one per line, or read from a file as people have them (a
text file, a CSV or Excel table, JSON Lines of prompts or of chats, a Hub dataset's Parquet file or an
Arrow file that ``datasets`` saved)."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from ..data import MAX_BYTES, MB, arrow_rows, parquet_rows
from ..data.pipeline import PARQUET_UNPACKED
from ..data.tables import WORKBOOK_SUFFIXES, sheet_rows, table_delimiter
from .config import ConfigError, _loads_checked, read_json, read_text

SEED_FIELDS = ("seed", "message", "text", "prompt", "content", "question", "utterance", "query", "instruction", "input")
"""An object's (or a table column's) field that holds a seed message, the first found."""


def parse_seed_text(text: str) -> list[str]:
    """Typed seed messages: one per line, blank lines skipped."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def read_seeds(path: str | Path) -> list[str]:
    """Seed messages from ``.txt`` (one per line), ``.csv`` or an Excel workbook's first sheet (``.xlsx``:
    a column ``SEED_FIELDS`` names, else the first column of text), ``.jsonl`` (strings, objects with one
    of those fields, or conversations ``{"messages"}``, whose first user message is the
    seed), ``.json`` (a list of them) or ``.parquet`` and ``.arrow`` (rows like those objects: a Hub dataset
    of prompts or of chats, as downloaded or as ``datasets`` saved it)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".arrow"):
        return _nonempty_seeds(_columnar_seeds(path, parquet_rows if suffix == ".parquet" else arrow_rows), path)
    if suffix in WORKBOOK_SUFFIXES:
        return _nonempty_seeds(_workbook_seeds(path), path)
    text = read_text(path, "utf-8-sig", fallback="cp1252" if suffix == ".csv" else None)
    if suffix == ".csv":
        seeds = _csv_seeds(text)
    elif suffix == ".jsonl":
        seeds = [_seed_value(_json_line(line, path.name, n), f"{path.name} line {n}")
                 for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    elif suffix == ".json":
        data = read_json(path)
        if not isinstance(data, list):
            raise ConfigError(f"{path.name}: expected a list of seed messages")
        seeds = [_seed_value(value, f"{path.name}[{i}]") for i, value in enumerate(data)]
    else:
        seeds = parse_seed_text(text)
    return _nonempty_seeds(seeds, path)


def _nonempty_seeds(seeds: list[str], path: Path) -> list[str]:
    seeds = [s.strip() for s in seeds if s and s.strip()]
    if not seeds:
        raise ConfigError(f"{path.name}: no seed messages")
    return seeds


def _columnar_seeds(path: Path, read) -> list[str]:
    data = _read_bytes(path)
    try:
        rows, _ = read(data, max_unpacked=PARQUET_UNPACKED * MAX_BYTES)
    except ValueError as exc:
        raise ConfigError(f"{path.name}: the file {exc}") from None
    return [_seed_value(row, f"{path.name} row {n}") for n, row in enumerate(rows, start=1)]


def _workbook_seeds(path: Path) -> list[str]:
    """An Excel workbook's seed column, as a CSV file's (its first sheet)."""
    data = _read_bytes(path)
    try:
        with sheet_rows(data, max_unpacked=PARQUET_UNPACKED * MAX_BYTES) as rows:
            return _column_seeds([cells for _, cells in rows if any(cell.strip() for cell in cells)])
    except ValueError as exc:
        raise ConfigError(f"{path.name}: the file {exc}") from None


def _read_bytes(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{path.name}: file is over the {MAX_BYTES // MB} MB limit")
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path.name}: file not found") from None


def _csv_seeds(text: str) -> list[str]:
    """A CSV file's seed column, its cells separated as its first line shows (Excel writes ";" in many locales)."""
    return _column_seeds([row for row in csv.reader(io.StringIO(text), delimiter=table_delimiter(text[:65536]))
                          if any(cell.strip() for cell in row)])


def _column_seeds(rows: list[list[str]]) -> list[str]:
    """A table's seeds (its rows with a value): the column a header names with one of ``SEED_FIELDS``,
    or holding one as a word ("Seed text"), under that header (one of the first rows: a sheet may have
    a title above it); else, in a table whose first column numbers its rows (pandas' index), the next
    column under their header; else the first column with a value, every row but a snake_case header."""
    for at, row in enumerate(rows[:HEADER_ROWS]):
        header = [cell.strip().lower() for cell in row]
        column = next((header.index(name) for name in SEED_FIELDS if name in header), None)
        if column is None:  # a header in a person's words: "Seed text", "User message"
            column = next((i for name in SEED_FIELDS for i, cell in enumerate(header)
                           if len(cell.split()) <= 3 and not re.search(r"[.?!]", cell)  # (not a seed itself)
                           and name in re.findall(r"[a-z]+", cell)), None)
        if column is not None and _header(rows, at, column):
            return [row[column] for row in rows[at + 1:] if len(row) > column]
    filled = sorted({i for row in rows for i, cell in enumerate(row) if cell.strip()})
    for at in range(min(HEADER_ROWS, len(rows) - 1)):  # a numbered table (pandas' index), maybe under a title
        numbered = [i for i in filled if _numbers(rows[at + 1:], i)]
        text = [i for i in filled if numbered and i > numbered[0] and i not in numbered]
        if text and not _whole(_cell(rows[at], numbered[0])):
            return [row[text[0]] for row in rows[at + 1:] if len(row) > text[0]]
    column = filled[0] if filled else 0
    if len(rows) > 1 and _NAME.fullmatch(_cell(rows[0], column)):
        rows = rows[1:]  # a header of another name in a program's words ("user_msg"); "hello" stays a seed
    return [row[column] for row in rows if len(row) > column]


def _header(rows: list[list[str]], at: int, column: int) -> bool:
    """Whether row ``at``, whose cell in ``column`` names a seed field, is a header: not when the
    column below it holds one word a row (labels) where another column holds longer text, and so does
    this row (a header's other cells are names too). A header-less file of labelled messages ("What
    time is it?,query") had its labels read as the seeds, under a "query" taken for the header."""
    below = rows[at + 1:]
    values = [_cell(row, column) for row in below if _cell(row, column)]
    if not values or any(len(value.split()) > 1 for value in values):
        return True
    width = max((len(row) for row in below), default=0)
    return not any(_mean_words(below, other) >= 2.5 and len(_cell(rows[at], other).split()) >= 2
                   for other in range(width) if other != column)


def _mean_words(rows: list[list[str]], column: int) -> float:
    counts = [len(_cell(row, column).split()) for row in rows if _cell(row, column)]
    return sum(counts) / len(counts) if counts else 0.0


_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


def _cell(row: list[str], column: int) -> str:
    return row[column].strip() if len(row) > column else ""


def _whole(text: str) -> bool:
    return text.isdigit() and text.isascii()


def _numbers(rows: list[list[str]], column: int) -> bool:
    """Whether ``column`` numbers ``rows`` (every value a whole number): pandas writes its index so
    (``to_csv``, ``to_excel``); it is no seed ("0", "1", ... were read as the seeds)."""
    values = [_cell(row, column) for row in rows]
    return bool(values) and all(_whole(value) for value in values)


HEADER_ROWS = 5
"""Rows of a seed table searched for its header."""


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)  # (a Parquet file's bytes, dates, decimals)
    return text if len(text) <= 40 else text[:37] + "..."


def _json_line(line: str, name: str, number: int) -> Any:
    try:
        return _loads_checked(line, f"{name} line {number}")
    except ConfigError:
        raise ConfigError(f"{name} line {number}: invalid JSON") from None


def _seed_value(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in SEED_FIELDS:
            if isinstance(value.get(key), str):
                return value[key]
        if isinstance(value.get("messages"), list):  # a conversation (chat JSONL, as Synthetic writes): its opening
            opening = next((m.get("content") for m in value["messages"] if isinstance(m, dict) and m.get("role") == "user"),
                           None)
            if isinstance(opening, list):  # OpenAI's list of parts: the text ones
                opening = "\n\n".join(part["text"] for part in opening if isinstance(part, dict)
                                        and part.get("type") == "text" and isinstance(part.get("text"), str)) or None
            if isinstance(opening, str):
                return opening
            raise ConfigError(f'{where}: "messages" has no user message to start from')
        held = next((key for key in SEED_FIELDS if value.get(key) is not None), None)
        if held is not None:  # (it said "missing", with the field there)
            raise ConfigError(f'{where}: "{held}" holds {type(value[held]).__name__} {_short(value[held])}, '
                              "not a seed message's text")
        others = ", ".join(f'"{key}"' for key in SEED_FIELDS[1:])
        raise ConfigError(f'{where}: missing "seed" (or {others}, or chat "messages")')
    raise ConfigError(f"{where}: expected a string or an object with a seed")
