"""Parquet files, as the Hugging Face Hub stores datasets (``stanfordnlp/coqa``, ``rajpurkar/squad``),
and Arrow files, as ``datasets``' ``save_to_disk`` writes them (``data-00000-of-00001.arrow``): their
rows as the Python values JSON Lines records would be, read a few rows at a time under a cap.
"""
from __future__ import annotations

import io
import struct
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
    """:func:`parquet_rows` for an Arrow IPC stream or file (``is_arrow``), a record batch at a time:
    its rows counted and unpacked BATCH_ROWS at a time as each batch is read. A file whose batches are
    compressed (zstd or lz4: ``datasets`` never writes them so) is refused before any is read, since
    reading a batch unpacks it whole."""
    pa, _ = _pyarrow("an Arrow table")
    try:
        if _compressed_arrow(pa, data):
            raise ValueError("is a compressed Arrow table (its record batches are zstd or lz4), which is not read: "
                             "save it uncompressed, as datasets' save_to_disk does, or as Parquet")
        reader, batches = arrow_batches(pa, pa.BufferReader(data), data[:6] == b"ARROW1")
        return _rows(_counted(batches, max_rows), max_unpacked, "an Arrow table"), list(reader.schema.names)
    except (pa.ArrowException, OSError, TypeError, IndexError, struct.error) as exc:
        raise ValueError(_unreadable("an Arrow table", exc)) from None


def arrow_batches(pa, source, file_format: bool):
    """``(reader, its record batches one at a time)`` of an Arrow source: the random-access file format
    (``file_format``: "ARROW1" at its start) or a stream, as ``datasets`` writes."""
    if file_format:
        reader = pa.ipc.open_file(source)
        return reader, (reader.get_batch(i) for i in range(reader.num_record_batches))
    reader = pa.ipc.open_stream(source)
    return reader, iter(reader)


def _counted(batches, max_rows: int | None):
    """The record batches, in slices of BATCH_ROWS rows, their rows counted against ``max_rows`` as they come."""
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        _check_rows(rows, max_rows, "an Arrow table", at_least=True)
        for start in range(0, batch.num_rows, BATCH_ROWS):
            yield batch.slice(start, BATCH_ROWS)


def _compressed_arrow(pa, data: bytes) -> bool:
    """Whether any record batch (or dictionary) of an Arrow IPC stream or file has a compressed body: read
    from each message's flatbuffer (Message.header -> RecordBatch.compression), whose body is not read."""
    body = data[8:] if data[:6] == b"ARROW1" else data
    for message in pa.ipc.MessageReader.open_stream(pa.BufferReader(body)):
        if message.type in ("record batch", "dictionary"):
            meta = message.metadata.to_pybytes()
            table = _flat_table(meta, struct.unpack_from("<I", meta, 0)[0], 2)  # Message.header
            if table is not None and message.type == "dictionary":
                table = _flat_table(meta, table, 1)  # DictionaryBatch.data
            if table is not None and _flat_field(meta, table, 3) is not None:  # RecordBatch.compression
                return True
    return False


def _flat_field(buf: bytes, table: int, index: int) -> int | None:
    """Where field ``index`` of the flatbuffer table at ``table`` is (None when absent)."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    if 4 + 2 * index + 2 > struct.unpack_from("<H", buf, vtable)[0]:
        return None
    offset = struct.unpack_from("<H", buf, vtable + 4 + 2 * index)[0]
    return table + offset if offset else None


def _flat_table(buf: bytes, table: int, index: int) -> int | None:
    """The table that field ``index`` of the table at ``table`` points to (None when absent)."""
    at = _flat_field(buf, table, index)
    return None if at is None else at + struct.unpack_from("<I", buf, at)[0]


def _pyarrow(what: str):
    try:
        import pyarrow as pa
        import pyarrow.ipc  # noqa: F401  (pa.ipc)
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is in requirements.txt
        raise ValueError(f"is {what}; reading it needs pyarrow (pip install pyarrow)") from None
    return pa, pq


def _check_rows(rows: int, max_rows: int | None, what: str, at_least: bool = False) -> None:
    """``at_least``: ``rows`` were counted so far (a stream's batches), not all of them."""
    if max_rows is not None and rows > max_rows:
        counted = f"more than {max_rows:,} rows, the limit" if at_least else f"{rows:,} rows, over the limit of {max_rows:,}"
        raise ValueError(f"is {what} of {counted}: split it into smaller files")


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
