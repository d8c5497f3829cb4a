"""Data files inside a compression wrapper: ``train.jsonl.gz`` as many Hub datasets store their splits
(``Anthropic/hh-rlhf``'s, OpenAssistant's trees) and ``gzip`` writes. The file inside is read as an
upload of its own name would be, held to the same cap: compressing a file does not lift the limits."""
from __future__ import annotations

import zlib

from .base import MB

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
