"""Writes the Parquet fixtures: the JSON Lines files of good/ as the Hugging Face Hub stores datasets
(``datasets`` writes Parquet with pyarrow, one row a record, lists and dicts as list and struct
columns), and the bad ones. Run from the repository root: ``python tests/data/make_parquet.py``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent


def records(name: str) -> list[dict]:
    return [json.loads(line) for line in (HERE / "good" / name).read_text(encoding="utf-8").splitlines() if line]


def main() -> None:
    for name in ("coqa_hf.jsonl", "squad_hf.jsonl", "chat.jsonl"):
        pq.write_table(pa.Table.from_pylist(records(name)), HERE / "good" / name.replace(".jsonl", ".parquet"))
    # a table of something else (pandas writes it, through pyarrow)
    import pandas as pd

    pd.DataFrame({"city": ["Paris", "Lima"], "population": [2_100_000, 10_000_000]}).to_parquet(
        HERE / "bad" / "cities.parquet", index=False)
    # a download cut short: the footer (and its closing "PAR1") is missing
    whole = (HERE / "good" / "coqa_hf.parquet").read_bytes()
    (HERE / "bad" / "cut.parquet").write_bytes(whole[: len(whole) // 2] + b"PAR1")
    # simplified CoQA whose second row has a question but no answer list of the same length
    rows = [{"context": "Bees make honey from nectar. They store it in wax cells.",
             "questions": ["What do bees make?", "Where do they store it?"], "answers": ["honey", "in wax cells"]},
            {"context": "Kilimanjaro is the highest mountain in Africa.",
             "questions": ["Where is Kilimanjaro?", "How high is it?"], "answers": ["in Africa"]}]
    pq.write_table(pa.Table.from_pylist(rows), HERE / "bad" / "simple_mismatched_counts.parquet")


if __name__ == "__main__":
    main()
