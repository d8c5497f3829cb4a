"""Rows of a CSV or TSV file, as a spreadsheet exports them, read as JSON Lines records.

The first row names the columns; every later row is a record of strings, an empty cell a missing
value. So a table with the columns ``context, question, answer`` holds flat questions, and one with
``instruction, input, output`` Alpaca examples, as their JSON Lines files do. Excel in many locales
writes ``;`` between cells; the separator is found from the file's start. Rows are numbered as a
spreadsheet shows them: the header is row 1.
"""
from __future__ import annotations

import csv
import io
import itertools
from typing import Any

from .parquet import sharing_texts

TABLE_SUFFIXES = (".csv", ".tsv")
MAX_CELL = 2**26
"""Longest cell read (the csv module's own limit, process-wide, is 128 KB; an upload is capped before)."""


def is_table(name: str) -> bool:
    """Whether a file's name says it is a CSV or TSV table.

    >>> is_table("faq.CSV"), is_table("faq.jsonl")
    (True, False)
    """
    return name.lower().endswith(TABLE_SUFFIXES)


def table_rows(text: str, name: str, max_rows: int | None = None) -> tuple[list[tuple[int, dict[str, Any]]],
                                                                            list[tuple[int, str]], list[str]]:
    """``(rows, faults, columns)``: each row that has a value as ``(row number, {column: text})``
    without its empty cells, and each row with more cells than the header names as a fault (a cell's
    text with the separator in it, unquoted, shifts the columns after it).

    Raises ``ValueError`` with what to say after "the file ...": no header, two columns of one name,
    more than ``max_rows`` rows, or text the csv module cannot split (a quote left open).

    >>> table_rows("question;answer\\nWhy?;Because.\\n\\nHow?;", "faq.csv")
    ([(2, {'question': 'Why?', 'answer': 'Because.'}), (4, {'question': 'How?'})], [], ['question', 'answer'])
    """
    delimiter = "\t" if name.lower().endswith(".tsv") else table_delimiter(text[:65536])
    if csv.field_size_limit() < MAX_CELL:  # the csv module's 128 KB a cell is less than a long passage
        csv.field_size_limit(MAX_CELL)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    line = 1  # where the record being read starts
    try:
        columns = [cell.strip() for cell in next(reader, None) or []]
        if not any(columns):
            raise ValueError("has no header row naming its columns")
        repeated = sorted({c for c in columns if c and columns.count(c) > 1})
        if repeated:
            raise ValueError(f"names the column {repeated[0]!r} twice in its header")
        rows, faults, shared = [], [], {}
        for number in itertools.count(2):
            line = reader.line_num + 1
            cells = next(reader, None)
            if cells is None:
                break
            if max_rows is not None and number - 1 > max_rows:
                raise ValueError(f"is a table of more than {max_rows:,} rows, the limit: split it into smaller files")
            if any(cell.strip() for cell in cells[len(columns):]):
                faults.append((number, f"{len(cells)} cells but the header names {len(columns)} columns (a cell "
                                       "with the separator in it needs quotes)"))
                continue
            record = {column: cell for column, cell in zip(columns, cells) if column and cell.strip()}
            if record:
                rows.append((number, sharing_texts(record, shared)))
    except csv.Error as exc:
        if "end of data" in str(exc):
            raise ValueError(f"is not a table that can be read: a quoted cell that starts on line {line} is never "
                             "closed") from None
        raise ValueError(f"is not a table that can be read (line {reader.line_num}: {exc})") from None
    return rows, faults, columns


def table_delimiter(sample: str) -> str:
    """The separator of a CSV file: the one of ``,``, ``;`` and tab that splits its header line into
    the most cells (a quoted cell's separators do not count)."""
    first = sample.split("\n", 1)[0]
    counts = {d: len(next(csv.reader([first], delimiter=d), [])) for d in (",", ";", "\t")}
    return max(counts, key=lambda d: (counts[d], d == ","))
