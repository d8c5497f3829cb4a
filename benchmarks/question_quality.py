"""Does fine-tuning make questions better? Base model vs adapter on held-out passages of a CoQA file.

    python benchmarks/question_quality.py --data coqa.json [--heldout 10] [--steps 200] [--task qg]

Splits the file's passages (seeded) into train and held-out, measures the questions convo generates
for the held-out passages (questions per passage, share of model samples passing the filters, mean
best-match ROUGE-L and BLEU against the passage's human questions, distinct-2, mean length in words
vs the human mean), fine-tunes an adapter on the train split through the Fine-tune tab's job path
(convo.jobs: a job folder, ``python -m training.finetune`` in a child process), measures again with
the adapter, and prints both side by side with the time each took. ``--json FILE`` saves the figures.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METRICS = (("passages", "held-out passages", "{:.0f}"), ("questions_per_passage", "questions per passage", "{:.2f}"),
           ("pass_rate", "model samples passing filters", "{:.1%}"), ("rouge_l", "best-match ROUGE-L", "{:.3f}"),
           ("bleu", "BLEU (best-match reference)", "{:.3f}"), ("distinct_2", "distinct-2", "{:.3f}"),
           ("mean_words", "mean length (words)", "{:.1f}"), ("human_words", "human mean length (words)", "{:.1f}"),
           ("seconds", "time (s)", "{:.1f}"))
SHOWN = ("ranked below the top n", "not used as a fill-in")
"""Reasons a candidate was dropped although it passed every filter."""


def split_passages(passages: Sequence, heldout: int, seed: int) -> tuple[list, list]:
    """``(train, held_out)``: a seeded shuffle, the last ``heldout`` passages held out."""
    if not 1 <= heldout < len(passages):
        raise SystemExit(f"--heldout must be between 1 and {len(passages) - 1} for {len(passages)} passages")
    order = list(passages)
    random.Random(seed).shuffle(order)
    return order[:-heldout], order[-heldout:]


def write_simple_coqa(passages: Sequence, path: Path) -> Path:
    """Passages as simplified CoQA (``[{"context", "questions", "answers"}]``), what the tab reads."""
    records = [{"context": p.context, "questions": [t.question for t in p.turns],
                "answers": [t.answer or "" for t in p.turns]} for p in passages]
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def distinct_2(texts: Sequence[str]) -> float:
    """Unique word bigrams over all bigrams of ``texts`` (1.0: no bigram repeats)."""
    from convo.finetune import _metric_words

    grams = [tuple(w[i:i + 2]) for w in map(_metric_words, texts) for i in range(len(w) - 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def best_match(question: str, references: Sequence[str]) -> tuple[float, str]:
    """The human question closest to ``question`` by ROUGE-L, and that ROUGE-L."""
    from convo.finetune import rouge_l

    return max(((rouge_l(question, r), r) for r in references), default=(0.0, ""))


def measure(passages: Sequence, spec, n: int, seed: int, task: str) -> dict:
    """Generate ``n`` questions per passage with ``spec`` and score them against the human ones."""
    from convo import questions as qg
    from convo.finetune import bleu
    from convo.engine import get_model
    from convo.settings import Sampling

    lm = get_model(spec)
    settings = qg.QuestionSettings(sampling=Sampling(**{**qg.QG_SAMPLING.to_dict(), "seed": seed}))
    started = time.monotonic()
    outputs, refs, rouges, generated, failed, counts = [], [], [], 0, 0, []
    for passage in passages:
        humans = [t.question for t in passage.turns]
        run = qg.question_run(passage.context, n, lm, history=[] if task == "cqg" else None, settings=settings)
        counts.append(len(run.questions))
        generated += run.generated
        failed += sum(q.source == "model" and not set(q.reasons) & set(SHOWN) for q in run.dropped)
        for q in run.questions:
            score, ref = best_match(q.text, humans)
            outputs.append(q.text)
            refs.append(ref)
            rouges.append(score)
    humans = [t.question for p in passages for t in p.turns]
    return {"passages": len(passages), "questions_per_passage": sum(counts) / len(counts),
            "pass_rate": (generated - failed) / generated if generated else 0.0,
            "rouge_l": sum(rouges) / len(rouges) if rouges else 0.0, "bleu": bleu(outputs, refs) if outputs else 0.0,
            "distinct_2": distinct_2(outputs), "mean_words": _mean_words(outputs), "human_words": _mean_words(humans),
            "seconds": time.monotonic() - started, "examples": outputs[:5]}


def _mean_words(texts: Sequence[str]) -> float:
    return sum(len(t.split()) for t in texts) / len(texts) if texts else 0.0


def finetune(train_file: Path, model: str, output_dir: Path, args) -> tuple[Path, float]:
    """Train an adapter through the Fine-tune tab's job path; returns its folder and the seconds taken."""
    from convo import jobs
    from convo.finetune import FinetuneConfig, TrainSettings

    every = max(1, min(50, args.steps))
    settings = TrainSettings(max_steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr, task=args.task,
                             max_length=args.max_length, eval_every=every, save_every=every, eval_generations=0,
                             seed=args.seed)
    config = FinetuneConfig(train_data=str(train_file), output_dir=str(output_dir), model_name=model,
                            settings=settings, overwrite=True)
    started = time.monotonic()
    job = jobs.create_job(config)
    print("training:", " ".join(jobs.job_command(job)), flush=True)
    jobs.spawn_job(job)
    while jobs.job_state(job) in ("queued", "running"):
        time.sleep(1.0)
    status = jobs.read_status(job)
    if jobs.job_state(job) != "finished" or not status.get("adapter"):
        log = (job / "train.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"training failed ({jobs.job_state(job)}): {status.get('error')}\n{log}")
    return Path(status["adapter"]), time.monotonic() - started


def table(base: dict, tuned: dict) -> str:
    """Both measurements side by side, one metric a line."""
    lines = [f"{'':32} {'base':>10} {'adapter':>10} {'change':>10}"]
    for key, label, fmt in METRICS:
        change = tuned[key] - base[key]
        sign = "+" if change >= 0 else "-"
        lines.append(f"{label:32} {fmt.format(base[key]):>10} {fmt.format(tuned[key]):>10} "
                     f"{sign + fmt.format(abs(change)):>10}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CoQA-format file (official, simplified or SQuAD)")
    parser.add_argument("--model", default="bundled", help="base model (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--heldout", type=int, default=10, help="passages held out for measuring (default 10)")
    parser.add_argument("-n", type=int, default=5, help="questions per held-out passage (default 5)")
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200, CPU-sized; more on a GPU)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--max-length", type=int, default=512, help="longest training example in tokens")
    parser.add_argument("--task", default="qg", choices=("qg", "cqg"),
                        help="qg: one question per passage prompt; cqg: the next question given the conversation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for the split and the adapter (default: a temp folder)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    from convo.data import load_data
    from convo.settings import ModelSpec

    passages, _ = load_data(args.data, task=args.task)
    train, held_out = split_passages(passages, args.heldout, args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="question-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    train_file = write_simple_coqa(train, work / "train.json")
    print(f"{args.data}: {len(passages)} passages, {len(train)} to train on "
          f"({sum(len(p.turns) for p in train)} questions), {len(held_out)} held out", flush=True)

    base = measure(held_out, ModelSpec(args.model), args.n, args.seed, args.task)
    print("base:", json.dumps({k: v for k, v in base.items() if k != "examples"}), flush=True)
    if args.json:  # kept now: a run stopped during training still has its base figures
        Path(args.json).write_text(json.dumps({"base": base, "args": vars(args)}, indent=2), encoding="utf-8")
    adapter, train_s = finetune(train_file, args.model, work / "adapter", args)
    tuned = measure(held_out, ModelSpec(args.model, adapter=str(adapter)), args.n, args.seed, args.task)
    print(f"\nfine-tuning: {args.steps} steps in {train_s:.1f} s ({args.task}, adapter {adapter})")
    print(table(base, tuned))
    for name, figures in (("base", base), ("adapter", tuned)):
        print(f"{name} examples: " + " | ".join(figures["examples"][:3]))
    if args.json:
        Path(args.json).write_text(json.dumps({"base": base, "adapter": tuned, "train_seconds": train_s,
                                               "args": vars(args)}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
