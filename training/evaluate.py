"""Score a trained adapter on a data file and print the metrics as JSON.

    python -m training.evaluate --adapter ./adapter --data val.json [--task qg] [--max_examples 64] [--compare_base]

Prints validation loss (per target token), ROUGE-L and BLEU of greedy generations against the references
(and the same for the base model with --compare_base). Exit status 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", required=True, help="adapter folder (as written by training.finetune)")
    parser.add_argument("--data", required=True, help="data file: CoQA, simplified CoQA, SQuAD or chat JSONL")
    parser.add_argument("--task", choices=("qg", "cqg", "qa", "qa_closed", "chat"),
                        help="default: the task the adapter was trained for")
    parser.add_argument("--base", help="base model (default: the one recorded in the adapter)")
    parser.add_argument("--max_examples", type=int, default=64, help="score at most this many examples")
    parser.add_argument("--compare_base", action="store_true", help="also score the base model (base_* keys)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    parser.add_argument("--device", default="auto")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from convo.data import DataError
    from convo.finetune import evaluate_adapter
    from convo.engine import ModelLoadError

    try:
        metrics = evaluate_adapter(args.adapter, args.data, task=args.task, base=args.base,
                                   max_examples=args.max_examples, compare_base=args.compare_base,
                                   dtype=args.dtype, device=args.device)
    except (DataError, ModelLoadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
