"""Output files: chat JSONL appended one whole line at a time (resumable), and the flat JSON export."""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import ConfigError
from .jobs import Job
from .programs import Result


def repair_tail(path: str | Path) -> int:
    """Cut a partial last line (a run killed mid-write) off ``path``; return the bytes removed."""
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        # Walk back to the last newline in blocks (lines can be long).
        end = size
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            cut = fh.read(end - start).rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        else:
            keep = 0
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return size - keep


def read_records(path: str | Path) -> list[dict]:
    """The whole lines of a chat JSONL output (a partial trailing line is ignored). Raises ConfigError
    naming a bad line in the middle: that file was not written by convo and is not appended to."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete = lines[:-1]  # after the last newline there is nothing, or a partial line
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError(f"{path.name} line {number}: not a JSON line; choose a new output file") from None
        if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
            raise ConfigError(f'{path.name} line {number}: no "messages"; choose a new output file')
        records.append(record)
    return records


def done_keys(path: str | Path) -> set[str]:
    """Item keys already in an output file (what a rerun skips)."""
    return {r["meta"]["key"] for r in read_records(path) if isinstance(r.get("meta"), dict) and r["meta"].get("key")}


def make_record(result: Result, job: Job, model: str, sampling) -> dict:
    """The chat JSONL line for a kept conversation."""
    item = result.item
    meta: dict[str, Any] = {"key": item.key, "sample": item.index}
    if item.word is not None:
        meta["word"] = item.word
    else:
        meta["seed"] = item.seed
        meta["persona"] = {"motivation": item.persona.motivation, "disposition": item.persona.disposition}
    meta.update(model=model, settings={**job.settings_meta(), "sampling": sampling.to_dict()},
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"), attempt=result.attempt + 1)
    if result.restyled is not None:
        meta["restyled"] = result.restyled
    return {"messages": result.messages, "meta": meta}


class Interrupted(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM during a CLI run (never while a line is being written)."""


class _WriteGuard(threading.local):
    """Marks the thread writing a line; the CLI's signal handler (which Python runs in the main thread)
    defers its interrupt until the line is written and counted, so a stop never leaves half a line."""

    depth = 0
    pending = False

    def __enter__(self):
        self.depth += 1

    def __exit__(self, *exc_info):
        self.depth -= 1
        if self.depth == 0 and self.pending and exc_info[0] is None:
            self.pending = False
            raise Interrupted()


_writing = _WriteGuard()


def append_record(fh, record: dict) -> None:
    """Append one JSON line and force it to disk (a kill can only ever lose the line being made)."""
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with _writing:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def write_flat_json(jsonl_path: str | Path, json_path: str | Path) -> Path:
    """Write the conversations in the flat shape of earlier persona experiments:
    ``[{"conv": [...], "restyled_conv": [...] | null, "seed", "motivation", "disposition", "word"}, ...]``."""
    flat = []
    for record in read_records(jsonl_path):
        meta = record.get("meta") or {}
        persona = meta.get("persona") or {}
        flat.append({"conv": record["messages"], "restyled_conv": meta.get("restyled"), "seed": meta.get("seed"),
                     "motivation": persona.get("motivation"), "disposition": persona.get("disposition"),
                     "word": meta.get("word"), "key": meta.get("key")})
    json_path = Path(json_path)
    partial = json_path.with_name(json_path.name + ".partial")
    partial.write_text(json.dumps(flat, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(partial, json_path)
    return json_path


def output_counts(path: str | Path) -> dict:
    """Counts for a dataset card: conversations, messages, distinct words / seeds / personas."""
    records = read_records(path)
    metas = [r.get("meta") or {} for r in records]
    counts = {"conversations": len(records), "messages": sum(len(r["messages"]) for r in records)}
    words = {m["word"] for m in metas if m.get("word")}
    seeds = {m["seed"] for m in metas if m.get("seed")}
    personas = {json.dumps(m["persona"], sort_keys=True) for m in metas if m.get("persona")}
    counts.update({k: len(v) for k, v in (("words", words), ("seeds", seeds), ("personas", personas)) if v})
    return counts
