"""Training throughput: trained (non-padding) tokens per second with convo's length-grouped batches,
against plain randomly-padded batches, run in the same process on the same examples.

    python benchmarks/train_throughput.py [--model bundled] [--steps 12] [--batch_size 8] [--qlora]

The examples mix every task built from the sample files in tests/data/good (short closed-book answers
to long conversational prompts), so batch lengths vary as they do in real CoQA data.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine

SAMPLES = ROOT / "tests" / "data" / "good"
QA_FILES = ("coqa.json", "coqa_simple.json", "squad_v1.json", "squad_v2.json")


def mixed_examples() -> list:
    """Every task's examples from the sample files: lengths from a dozen tokens to several hundred."""
    from convo.data import load_examples

    examples = []
    for name in QA_FILES:
        for task in ("qg", "cqg", "qa", "qa_closed"):
            try:
                examples += load_examples(SAMPLES / name, task)[0]
            except Exception:  # a file without answers has no qa examples
                continue
    examples += load_examples(SAMPLES / "chat.jsonl", "chat")[0]
    return examples


def run(spec, examples, args, grouped: bool, steps: int) -> dict:
    """One training run; returns non-padding tokens, seconds and tokens per second."""
    from convo.finetune import TrainSettings, train_adapter

    settings = TrainSettings(max_steps=steps, batch_size=args.batch_size, max_length=args.max_length,
                             group_by_length=grouped, qlora=args.qlora, eval_generations=0,
                             early_stopping_patience=0, save_every=10_000, seed=args.seed)
    with tempfile.TemporaryDirectory() as folder:
        result = train_adapter(spec, examples, None, settings, Path(folder) / "adapter")
    tokens, seconds = result.metrics["train_tokens"], result.metrics["train_runtime_s"]
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / max(seconds, 1e-9)}


def example_lengths(spec, examples, args) -> list[int]:
    """Token length of every encoded example, as the trainer sees them."""
    from convo.finetune import TrainSettings, encode_examples, load_base_for_training

    lm = load_base_for_training(spec, TrainSettings(qlora=args.qlora))
    return [len(item["input_ids"]) for item in encode_examples(lm, examples, args.max_length)[0]]


def padding_share(lengths: list[int], args, grouped: bool, steps: int) -> float:
    """Share of padded positions in batches built like the run's sampler builds them."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    torch.manual_seed(args.seed)
    order = list(LengthGroupedSampler(args.batch_size, lengths=lengths)) if grouped else \
        torch.randperm(len(lengths)).tolist()
    order = (order * (steps * args.batch_size // len(order) + 1))[: steps * args.batch_size]
    batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    real = sum(lengths[i] for batch in batches for i in batch)
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    return 1 - real / padded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=512)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--qlora", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from convo.settings import ModelSpec

    spec = ModelSpec(args.model, dtype=args.dtype, device=args.device)
    examples = mixed_examples()
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine: {machine()}")
    print(f"model: {args.model}, {len(examples)} examples, batch {args.batch_size}, max_length {args.max_length}, "
          f"{args.steps} steps, qlora {args.qlora}")
    started = time.monotonic()
    run(spec, examples, args, grouped=True, steps=2)  # warm-up: first-call costs land in neither measurement
    padded = run(spec, examples, args, grouped=False, steps=args.steps)
    grouped = run(spec, examples, args, grouped=True, steps=args.steps)
    lengths = example_lengths(spec, examples, args)
    for label, result, is_grouped in (("padded random batches (baseline)", padded, False),
                                      ("length-grouped batches (convo)", grouped, True)):
        share = padding_share(lengths, args, is_grouped, args.steps)
        print(f"{label:34s} {result['tokens']:7d} tokens in {result['seconds']:7.1f} s = "
              f"{result['tokens_per_s']:8.1f} tokens/s (padding {share:.0%})")
    print(f"ratio (grouped / padded): {grouped['tokens_per_s'] / padded['tokens_per_s']:.2f}x")
    print(f"total wall time: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
