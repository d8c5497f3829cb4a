"""Parquet files, as the Hugging Face Hub stores datasets (``stanfordnlp/coqa``, ``rajpurkar/squad``),
and Arrow files, as ``datasets``' ``save_to_disk`` writes them (``data-00000-of-00001.arrow``): their
rows as the Python values JSON Lines records would be, read a few rows at a time under a cap.
"""
from __future__ import annotations

import io
from typing import Any

from .base import MB

BATCH_ROWS = 64
"""Rows unpacked at a time: a value the file stores once (in a column's dictionary) is repeated in
every row that holds it, so the file's own sizes do not bound what its rows unpack to; counting a
few rows at a time does."""


def is_parquet(data: bytes) -> bool:
    """Whether ``data`` is a Parquet file: "PAR1" at both ends.

    >>> is_parquet(b"PAR1" + bytes(8) + b"PAR1"), is_parquet(b'{"a": 1}')
    (True, False)
    """
    return len(data) >= 8 and data[:4] == b"PAR1" and data[-4:] == b"PAR1"


def is_arrow(data: bytes) -> bool:
    """Whether ``data`` is an Arrow IPC file: a stream (``datasets``' ``.arrow`` files: a continuation
    marker, then the schema message's length) or the random-access file format ("ARROW1" at the start).

    >>> is_arrow(b"\\xff\\xff\\xff\\xff\\xb8\\x01\\x00\\x00"), is_arrow(b"ARROW1\\x00\\x00"), is_arrow(b"[]")
    (True, True, False)
    """
    return (len(data) >= 8 and data[:4] == b"\xff\xff\xff\xff" and data[4:8] != b"\x00\x00\x00\x00"
            or data[:6] == b"ARROW1")


def parquet_rows(data: bytes, max_unpacked: int | None = None,
                 max_rows: int | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a Parquet file (lists and structs as lists and dicts) and its column names.

    Raises ``ValueError`` with what to say after "the file ...": it is not a Parquet file that can be
    read, it has more than ``max_rows`` rows, or its rows unpack to more than ``max_unpacked`` bytes
    (Arrow's size of the values read, checked every BATCH_ROWS rows).
    """
    pa, pq = _pyarrow("a Parquet table")
    try:
        table = pq.ParquetFile(io.BytesIO(data))
        meta = table.metadata
        _check_rows(meta.num_rows, max_rows, "a Parquet table")
        if max_unpacked is not None and sum(
                meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) > max_unpacked:
            raise ValueError(_too_big("a Parquet table", max_unpacked))
        return _rows(table.iter_batches(batch_size=BATCH_ROWS), max_unpacked, "a Parquet table"), \
            list(table.schema_arrow.names)
    # a damaged file; the ValueErrors raised above are no ArrowException (ArrowInvalid is both) and pass
    except (pa.ArrowException, OSError, TypeError, IndexError) as exc:
        raise ValueError(_unreadable("a Parquet table", exc)) from None


def arrow_rows(data: bytes, max_unpacked: int | None = None,
               max_rows: int | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """:func:`parquet_rows` for an Arrow IPC stream or file (``is_arrow``). Its record batches are read
    in place from ``data`` (``datasets`` writes them uncompressed), so counting its rows first costs
    little; they are unpacked BATCH_ROWS rows at a time."""
    pa, _ = _pyarrow("an Arrow table")
    try:
        source = pa.BufferReader(data)
        if data[:6] == b"ARROW1":
            reader = pa.ipc.open_file(source)
            batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        else:
            reader = pa.ipc.open_stream(source)
            batches = list(reader)
        _check_rows(sum(batch.num_rows for batch in batches), max_rows, "an Arrow table")
        slices = (batch.slice(start, BATCH_ROWS) for batch in batches for start in range(0, batch.num_rows, BATCH_ROWS))
        return _rows(slices, max_unpacked, "an Arrow table"), list(reader.schema.names)
    except (pa.ArrowException, OSError, TypeError, IndexError) as exc:
        raise ValueError(_unreadable("an Arrow table", exc)) from None


def _pyarrow(what: str):
    try:
        import pyarrow as pa
        import pyarrow.ipc  # noqa: F401  (pa.ipc)
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is in requirements.txt
        raise ValueError(f"is {what}; reading it needs pyarrow (pip install pyarrow)") from None
    return pa, pq


def _check_rows(rows: int, max_rows: int | None, what: str) -> None:
    if max_rows is not None and rows > max_rows:
        raise ValueError(f"is {what} of {rows:,} rows, over the limit of {max_rows:,}: split it into smaller files")


def _too_big(what: str, max_unpacked: int | None) -> str:
    return f"is {what} that unpacks to more than {(max_unpacked or 0) / MB:.1f} MB, the limit: split it into smaller files"


def _rows(batches, max_unpacked: int | None, what: str) -> list[dict[str, Any]]:
    """The rows of record batches as Python values, their Arrow sizes summed against ``max_unpacked``."""
    rows, unpacked, shared = [], 0, {}
    for batch in batches:
        unpacked += batch.nbytes
        if max_unpacked is not None and unpacked > max_unpacked:
            raise ValueError(_too_big(what, max_unpacked))
        rows.extend(sharing_texts(row, shared) for row in batch.to_pylist())
    return rows


def sharing_texts(row: dict[str, Any], shared: dict[str, str]) -> dict[str, Any]:
    """``row`` with each long text a column repeats (SQuAD's paragraph, once per question) held once:
    Arrow gives every row its own copy, 66 MB of SQuAD's 87,599 rows (and so does a CSV reader)."""
    for key, value in row.items():
        if isinstance(value, str) and len(value) > 200:
            row[key] = shared.setdefault(value, value)
    return row


def _unreadable(what: str, exc: Exception) -> str:
    return f"is not {what} that can be read ({type(exc).__name__}: {str(exc)[:120]})"
