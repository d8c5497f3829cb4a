"""Rows of a spreadsheet, read as JSON Lines records: a CSV or TSV file as a spreadsheet exports it,
or an Excel workbook's first sheet as Excel saves it (``.xlsx``).

The first row with a value names the columns; every later row is a record of strings, an empty cell a
missing value. So a table with the columns ``context, question, answer`` holds flat questions, and one
with ``instruction, input, output`` Alpaca examples, as their JSON Lines files do. Excel in many locales
writes ``;`` between a CSV's cells; the separator is found from the file's start. Rows are numbered as a
spreadsheet shows them: in a table that starts at the top, the header is row 1.
"""
from __future__ import annotations

import csv
import datetime
import io
import itertools
import zipfile
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from .base import MB
from .parquet import sharing_texts

TABLE_SUFFIXES = (".csv", ".tsv")
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")
"""Excel's workbooks (Office Open XML; ``.xlsm`` is one with macros, which are not run). Excel 97-2003's
``.xls`` is another format, refused with what to do (``packed._packed_reason``)."""
MAX_CELL = 2**26
"""Longest cell read (the csv module's own limit, process-wide, is 128 KB; an upload is capped before)."""


def is_table(name: str) -> bool:
    """Whether a file's name says it is a CSV or TSV table.

    >>> is_table("faq.CSV"), is_table("faq.jsonl")
    (True, False)
    """
    return name.lower().endswith(TABLE_SUFFIXES)


def is_workbook(name: str, data: bytes) -> bool:
    """Whether a file is an Excel workbook: its name says so and it is a zip archive, as ``.xlsx`` is.

    >>> is_workbook("faq.XLSX", b"PK\\x03\\x04..."), is_workbook("faq.xlsx", b"question,answer")
    (True, False)
    """
    return name.lower().endswith(WORKBOOK_SUFFIXES) and data.startswith(b"PK\x03\x04")


Rows = tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str]], list[str]]


def table_rows(text: str, name: str, max_rows: int | None = None) -> Rows:
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
    starts = [1]  # the line where the record being read starts

    def numbered():
        for number in itertools.count(1):
            starts[0] = reader.line_num + 1
            cells = next(reader, None)
            if cells is None:
                return
            yield number, cells

    def shifted(cells: list[str], columns: list[str]) -> str:
        return (f"{len(cells)} cells but the header names {len(columns)} columns (a cell with the separator in "
                "it needs quotes)")

    try:
        return _records(numbered(), max_rows, shifted, blank_start=False)
    except csv.Error as exc:
        if "end of data" in str(exc):
            raise ValueError(f"is not a table that can be read: a quoted cell that starts on line {starts[0]} is "
                             "never closed") from None
        raise ValueError(f"is not a table that can be read (line {reader.line_num}: {exc})") from None


def workbook_rows(data: bytes, max_unpacked: int | None = None, max_rows: int | None = None) -> Rows:
    """``table_rows`` for an Excel workbook's first sheet (``sheet_rows``). A value in a column the
    header row leaves unnamed is a fault of its row.

    Raises ``ValueError`` with what to say after "the file ...": as ``sheet_rows`` and ``table_rows``.
    """
    from openpyxl.utils import get_column_letter

    def unnamed(cells: list[str], columns: list[str]) -> str:
        at = next(i for i in range(len(columns), len(cells)) if cells[i].strip())
        return f"a value in column {get_column_letter(at + 1)}, which the header row does not name"

    with sheet_rows(data, max_unpacked) as rows:
        return _records(rows, max_rows, unnamed, blank_start=True)


@contextmanager
def sheet_rows(data: bytes, max_unpacked: int | None = None) -> Iterator[Iterator[tuple[int, list[str]]]]:
    """The rows of an Excel workbook's first sheet, each ``(row number, [cell text, ...])`` with its
    cells as ``cell_text`` writes them (a formula as the value Excel saved with it), read while the
    context is open.

    Raises ``ValueError`` with what to say after "the file ...": a damaged workbook, one without a
    worksheet, or one whose parts unpack to more than ``max_unpacked`` bytes (a zip that would fill memory).
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())  # (a part never reads past its size)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(f"is not an Excel workbook that can be read ({str(exc)[:120]})") from None
    if max_unpacked is not None and unpacked > max_unpacked:
        raise ValueError(f"unpacks to {unpacked / MB:.1f} MB, over the {max_unpacked / MB:.1f} MB a workbook may "
                         "unpack to: split it into smaller files")
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises what its parts raise: KeyError, ValueError, XML errors...
        raise ValueError(_unreadable(exc)) from None
    try:
        if not book.worksheets:
            raise ValueError("is an Excel workbook without a worksheet")
        sheet = book.worksheets[0]
        sheet.reset_dimensions()  # (the size a writer records may be wrong: read the rows there are)
        yield _numbered_cells(sheet)
    finally:
        book.close()


def _numbered_cells(sheet) -> Iterator[tuple[int, list[str]]]:
    try:
        for number, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [cell_text(value) for value in cells]
    except Exception as exc:  # a damaged sheet, found as it is read: XML errors, values of no known type
        raise ValueError(_unreadable(exc)) from None


def _unreadable(exc: Exception) -> str:
    return f"is not an Excel workbook that can be read ({type(exc).__name__}: {str(exc)[:120]})"


def cell_text(value: Any) -> str:
    """A workbook cell's value as text: numbers as Excel shows them by default, dates as ISO dates,
    booleans as Excel's TRUE and FALSE.

    >>> [cell_text(v) for v in (None, 12.0, 0.1 + 0.2, True, datetime.datetime(2024, 5, 1), "Why?")]
    ['', '12', '0.3', 'TRUE', '2024-05-01', 'Why?']
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.15g}"
    if isinstance(value, datetime.datetime):
        return value.date().isoformat() if value.time() == datetime.time() else value.isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def _records(numbered: Iterable[tuple[int, list[str]]], max_rows: int | None,
             extra_cells: Callable[[list[str], list[str]], str], blank_start: bool) -> Rows:
    """The header, then each row as a record of its named columns' non-empty cells; a row with a value
    beyond the header's cells is a fault (``extra_cells`` says what). The header is the first row, or
    with ``blank_start`` (a sheet, where people put a title above the table) the first with values in
    two cells or more (every layout has two columns), else the first with a value."""
    numbered = iter(numbered)
    header, above = None, []
    for number, cells in numbered:
        filled = sum(1 for cell in cells if cell.strip())
        if not blank_start or filled >= 2:
            header = number, cells
            break
        if filled:
            above.append((number, cells))
    if header is None and above:  # a table of one column: its first row with a value
        header = above[0]
        numbered = iter(above[1:])
    columns = [cell.strip() for cell in header[1]] if header else []
    if not any(columns):
        raise ValueError("has no header row naming its columns")
    repeated = sorted({c for c in columns if c and columns.count(c) > 1})
    if repeated:
        raise ValueError(f"names the column {repeated[0]!r} twice in its header")
    rows, faults, shared = [], [], {}
    for number, cells in numbered:
        if max_rows is not None and number - header[0] > max_rows:
            raise ValueError(f"is a table of more than {max_rows:,} rows, the limit: split it into smaller files")
        if any(cell.strip() for cell in cells[len(columns):]):
            faults.append((number, extra_cells(cells, columns)))
            continue
        record = {column: cell for column, cell in zip(columns, cells) if column and cell.strip()}
        if record:
            rows.append((number, sharing_texts(record, shared)))
    return rows, faults, columns


def table_delimiter(sample: str) -> str:
    """The separator of a CSV file: the one of ``,``, ``;`` and tab that splits its header line into
    the most cells (a quoted cell's separators do not count)."""
    first = sample.split("\n", 1)[0]
    counts = {d: len(next(csv.reader([first], delimiter=d), [])) for d in (",", ";", "\t")}
    return max(counts, key=lambda d: (counts[d], d == ","))
