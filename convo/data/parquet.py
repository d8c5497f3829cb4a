"""Parquet files, as the Hugging Face Hub stores datasets (``stanfordnlp/coqa``, ``rajpurkar/squad``):
their rows as the Python values JSON Lines records would be, read a few rows at a time under a cap.
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


def parquet_rows(data: bytes, max_unpacked: int | None = None,
                 max_rows: int | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a Parquet file (lists and structs as lists and dicts) and its column names.

    Raises ``ValueError`` with what to say after "the file ...": it is not a Parquet file that can be
    read, it has more than ``max_rows`` rows, or its rows unpack to more than ``max_unpacked`` bytes
    (Arrow's size of the values read, checked every BATCH_ROWS rows).
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is in requirements.txt
        raise ValueError("is a Parquet table; reading it needs pyarrow (pip install pyarrow)") from None
    too_big = (f"is a Parquet table that unpacks to more than {(max_unpacked or 0) / MB:.1f} MB, the limit: "
               "split it into smaller files")
    try:
        table = pq.ParquetFile(io.BytesIO(data))
        meta = table.metadata
        if max_rows is not None and meta.num_rows > max_rows:
            raise ValueError(f"is a Parquet table of {meta.num_rows:,} rows, over the limit of {max_rows:,}: "
                             "split it into smaller files")
        if max_unpacked is not None and sum(
                meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) > max_unpacked:
            raise ValueError(too_big)
        columns = list(table.schema_arrow.names)
        rows, unpacked, shared = [], 0, {}
        for batch in table.iter_batches(batch_size=BATCH_ROWS):
            unpacked += batch.nbytes
            if max_unpacked is not None and unpacked > max_unpacked:
                raise ValueError(too_big)
            rows.extend(sharing_texts(row, shared) for row in batch.to_pylist())
    # a damaged file; the ValueErrors raised above are no ArrowException (ArrowInvalid is both) and pass
    except (pa.ArrowException, OSError, TypeError, IndexError) as exc:
        raise ValueError(_unreadable(exc)) from None
    return rows, columns


def sharing_texts(row: dict[str, Any], shared: dict[str, str]) -> dict[str, Any]:
    """``row`` with each long text a column repeats (SQuAD's paragraph, once per question) held once:
    Arrow gives every row its own copy, 66 MB of SQuAD's 87,599 rows (and so does a CSV reader)."""
    for key, value in row.items():
        if isinstance(value, str) and len(value) > 200:
            row[key] = shared.setdefault(value, value)
    return row


def _unreadable(exc: Exception) -> str:
    return f"is not a Parquet table that can be read ({type(exc).__name__}: {str(exc)[:120]})"
