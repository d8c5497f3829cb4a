"""Field checks: each names the record and field at fault."""
from __future__ import annotations

import json
import re
from typing import Any

from .base import _Duplicates


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return {str: "string", dict: "object", list: "list"}.get(type(value), type(value).__name__)


_EXPECTED = {str: "a string", list: "a list", dict: "an object", int: "an integer", bool: "true or false"}


def _is(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _child(location: str, key: str) -> str:
    """``[4]`` + ``questions`` -> ``[4].questions``; JSONL lines read ``line 3, messages[1]``."""
    if not location:
        return key
    if location.startswith("line ") and "," not in location:
        return f"{location}, {key}"
    return f"{location}.{key}"


def _quote(text: str, limit: int = 60) -> str:
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def _field(record: dict, key: str, kind: type, location: str, faults: list, *, required: bool = True) -> Any:
    """``record[key]`` when present, of type ``kind`` and not blank; else note the fault, return None."""
    if key not in record:
        if required:
            faults.append((location, f'missing "{key}"'))
        return None
    value = record[key]
    if not _is(value, kind):
        faults.append((_child(location, key), f"expected {_EXPECTED[kind]}, got {_type_name(value)}"))
        return None
    if kind in (str, list) and not (value.strip() if kind is str else value):
        faults.append((location, f'empty "{key}"'))
        return None
    if kind is str and not _text_ok(value, _child(location, key), faults):
        return None
    return value


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _text_ok(text: str, location: str, faults: list) -> bool:
    """False (and a fault) for text holding a lone surrogate (``"\\ud800"`` in the file): it is
    not Unicode text, and tokenizers and JSON encoders refuse it."""
    found = _SURROGATE.search(text)
    if found is None:
        return True
    faults.append((location, f"holds a lone surrogate (\\u{ord(found.group()):04x}) at character {found.start()}: "
                             "not valid Unicode text"))
    return False


def _safe(text: str) -> str:
    """Text safe to send as JSON: lone surrogates written as backslash escapes (``\\udc80``)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if _SURROGATE.search(text) else text


def _object(value: Any, location: str, faults: list) -> dict | None:
    if isinstance(value, _Duplicates):
        repeated = ", ".join(_quote(key, 30) for key in value.repeated[:5])
        faults.append((location, f"repeats the key {repeated} (JSON keeps only the last value; which one was meant?)"))
        return None
    if isinstance(value, dict):
        return value
    faults.append((location, f"expected an object, got {_type_name(value)}"))
    return None


def _string_list(record: dict, key: str, location: str, faults: list, *, required: bool) -> list[str] | None:
    """A list of non-blank strings; an optional list that is absent, null or [] reads as []."""
    if not required and record.get(key) in (None, []):
        return []
    values = _field(record, key, list, location, faults, required=required)
    if values is None:
        return None
    before = len(faults)
    for index, value in enumerate(values):
        where = _child(location, f"{key}[{index}]")
        if not isinstance(value, str):
            faults.append((where, f"expected a string, got {_type_name(value)}"))
        elif not value.strip():
            faults.append((where, "empty string"))
        else:
            _text_ok(value, where, faults)
    return values if len(faults) == before else None
