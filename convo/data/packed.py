"""Data files inside a compression wrapper: ``train.jsonl.gz`` as many Hub datasets store their splits
(``Anthropic/hh-rlhf``'s, OpenAssistant's trees) and ``gzip`` writes. The file inside is read as an
upload of its own name would be, held to the same cap: compressing a file does not lift the limits.
And the packed files that are not training data (a PDF, an office document, a zip archive): refused
in words that say what to do."""
from __future__ import annotations

import zlib

from .base import MB
from .tables import WORKBOOK_SUFFIXES

GZIP_MAGIC = b"\x1f\x8b"


def gunzipped(data: bytes, name: str, most: int | None) -> tuple[bytes, str]:
    """``(data, name)`` of the file inside a gzip file (its name without ``.gz``), or the file itself
    when it is not one. Raises ``ValueError`` with what to say after "the file ...": more than ``most``
    bytes inside (found without unpacking more than that), cut short, or not gzip data.

    >>> import gzip
    >>> gunzipped(gzip.compress(b'{"a": 1}'), "x.jsonl.gz", None), gunzipped(b"{}", "x.json", None)
    ((b'{"a": 1}', 'x.jsonl'), (b'{}', 'x.json'))
    """
    if not (name.lower().endswith(".gz") and data.startswith(GZIP_MAGIC)):
        return data, name
    parts, rest, total = [], data, 0
    try:
        while rest:  # (gzip files may hold several members one after another: ``cat a.gz b.gz``)
            member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            part = member.decompress(rest, 0 if most is None else most - total + 1)
            total += len(part)
            if most is not None and total > most:
                raise ValueError(f"unpacks to more than {most / MB:.1f} MB, the limit of the file inside a .gz: "
                                 "split it into smaller files")
            if not member.eof:
                raise ValueError("is a gzip file that ends early (cut short in the download?)")
            parts.append(part)
            rest = member.unused_data.lstrip(b"\0")
    except zlib.error as exc:
        raise ValueError(f"is not a gzip file that can be read ({exc})") from None
    return b"".join(parts), name[:-3]


_TRAINING_DATA = ("training reads questions with their answers, or conversations (CoQA, SQuAD, chat JSONL, Alpaca, "
                  "ShareGPT, prompt/completion or preference pairs); the Questions tab asks questions about a document")
"""Said of a document given as training data (a PDF, a web page, a passage in a .txt file)."""


def _packed_reason(data: bytes, name: str) -> str | None:
    """Why a PDF, an office document or a zip archive is refused, in words that say what to do."""
    head = data[:1024].lstrip()
    if head.startswith(b"%PDF-"):
        return f"file is a PDF document, not training data: {_TRAINING_DATA}"
    spreadsheet = name.lower().endswith((".ods", ".numbers", ".xls"))
    if head.startswith(b"\xd0\xcf\x11\xe0") or (head.startswith(b"PK\x03\x04") and spreadsheet):  # (OLE2: .xls, .doc)
        if name.lower().endswith(WORKBOOK_SUFFIXES):  # Excel keeps a workbook with a password in an OLE2 file
            return "file is an Excel workbook locked with a password: save a copy without the password and use that"
        if spreadsheet:
            return ("file is a spreadsheet that convo does not read: save it as an Excel workbook (.xlsx) or as CSV, "
                    "its first row naming the columns")
        return f"file is an office document, not training data: {_TRAINING_DATA}"
    if head.startswith(b"PK\x03\x04"):
        if name.lower().endswith((".docx", ".odt", ".pptx", ".epub")):  # (an .xlsx is read: tables.is_workbook)
            return f"file is an office document, not training data: {_TRAINING_DATA}"
        return "file is a zip archive, not JSON text: unzip it and use the JSON or JSON Lines file inside"
    return None
