"""Writes the Arrow fixtures as ``datasets`` writes them: a dataset saved with ``save_to_disk`` is a folder
of Arrow IPC streams and JSON listings (a ``Dataset``'s, and a ``DatasetDict``'s with a folder per split),
and one of its ``.arrow`` files is what a person uploads. Needs ``datasets``, which convo does not
install: ``pip install datasets==5.2.0``, then from the repository root ``python tests/data/make_arrow.py``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

HERE = Path(__file__).parent


def records(name: str) -> list[dict]:
    return [json.loads(line) for line in (HERE / "good" / name).read_text(encoding="utf-8").splitlines() if line]


def saved(name: str) -> Path:
    folder = HERE / "saved" / name
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def main() -> None:
    from datasets import Dataset, DatasetDict  # (imported here: the test run collects this file, without datasets)

    chat = Dataset.from_list(records("chat.jsonl"))
    chat.save_to_disk(saved("chat"))
    # what an upload of a saved dataset is: its one Arrow file (save_to_disk names it data-00000-of-00001.arrow)
    shutil.copyfile(HERE / "saved" / "chat" / "data-00000-of-00001.arrow", HERE / "good" / "chat.arrow")
    # a DatasetDict: its train split in two shards (num_shards), its validation split in one
    squad = Dataset.from_list(records("squad_hf.jsonl"))
    DatasetDict(train=squad, validation=squad.select([0, 1])).save_to_disk(
        saved("squad_dict"), num_shards={"train": 2, "validation": 1})
    # a download cut short
    whole = (HERE / "good" / "chat.arrow").read_bytes()
    (HERE / "bad" / "cut.arrow").write_bytes(whole[: len(whole) // 2])


if __name__ == "__main__":
    main()
