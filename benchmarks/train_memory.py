"""Peak resident memory and trained tokens/s of a fine-tuning job on the bundled model, with a
500-passage CoQA-format file (question generation, batch 8, max length 512), as the Fine-tune tab runs it.

    python benchmarks/train_memory.py [--steps 4] [--eval_steps 2] [--task qg|cqg] [--code DIR] [-- extra training.finetune flags]

The job runs as ``python -m training.finetune`` in a child process; its resident memory (the child and
its own children, summed) is sampled every 0.1 s. ``--code DIR`` runs the training code of another
checkout (e.g. ``git worktree add /tmp/old <commit>``) on the same data: the "before" figure.
Passages are three stories of tests/data/make_coqa.py joined (about 300 words, as in the real CoQA).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, machine

sys.path.insert(0, str(ROOT / "tests" / "data"))


def coqa_passages(n: int = 500, stories_per_passage: int = 3, seed: int = 0) -> dict:
    """An official-CoQA dict of ``n`` passages, each ``stories_per_passage`` stories long (spans kept exact)."""
    from make_coqa import make_coqa

    stories = make_coqa(n * stories_per_passage, seed)["data"]
    data = []
    for index in range(n):
        group = stories[index * stories_per_passage:(index + 1) * stories_per_passage]
        text, questions, answers = "", [], []
        for story in group:
            offset = len(text) + (1 if text else 0)
            text = f"{text} {story['story']}" if text else story["story"]
            for question, answer in zip(story["questions"], story["answers"]):
                if any(q["input_text"] == question["input_text"] for q in questions):
                    continue  # the templates repeat some questions ("When was it?"): one per passage
                turn = len(questions) + 1
                questions.append({**question, "turn_id": turn})
                answers.append({**answer, "turn_id": turn, "span_start": answer["span_start"] + offset,
                                "span_end": answer["span_end"] + offset})
        data.append({**group[0], "id": f"passage-{index:04d}", "story": text, "questions": questions,
                     "answers": answers})
    return {"version": "1.0", "data": data}


class PeakRss:
    """Samples the summed resident memory of a process and its descendants in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.1):
        import psutil

        self.process = psutil.Process(pid)
        self.peak = 0
        self.interval = interval_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import psutil

        while not self.done.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            self.done.wait(self.interval)

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return self.peak


def run_job(code: Path, train: Path, out: Path, args, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "training.finetune", "--train_data", str(train), "--model_name", args.model,
               "--output_dir", str(out / "adapter"), "--batch_size", str(args.batch_size),
               "--max_length", str(args.max_length), "--max_steps", str(args.steps), "--eval_steps",
               str(args.eval_steps), "--save_steps", str(args.eval_steps * 1000), "--eval_generations", "0",
               "--early_stopping_patience", "0", "--task", args.task, *extra]
    env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    child = subprocess.Popen(command, cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = PeakRss(child.pid)
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.extend(child.stderr), daemon=True)
    drain.start()
    lines = []
    for line in child.stdout:  # progress lines as they come, with the memory so far
        lines.append(line)
        if line.startswith("step "):
            print(f"  {time.monotonic() - started:6.0f} s  {line.strip()}  (peak RSS so far {sampler.peak / 2**30:.2f} GiB)",
                  flush=True)
    child.wait()
    drain.join()
    stdout, stderr = "".join(lines), "".join(errors)
    peak = sampler.stop()
    wall = time.monotonic() - started
    if child.returncode != 0:
        raise SystemExit(f"training failed ({child.returncode}{', killed: out of memory?' if child.returncode == -9 else ''}) "
                         f"after {wall:.0f} s, peak RSS so far {peak / 2**30:.2f} GiB:\n{stderr[-3000:]}")
    summary = json.loads(stdout[stdout.index("{\n"):])
    return {"peak_rss": peak, "wall_s": wall, "metrics": summary["metrics"], "log": stdout}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--passages", type=int, default=500)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--eval_steps", type=int, default=2, help="validation loss every N steps")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=512)
    parser.add_argument("--task", default="qg", help="qg (examples of one sentence unit, ~150 tokens) or cqg "
                        "(the passage and the conversation so far: examples up to max_length)")
    parser.add_argument("--code", default=str(ROOT), help="checkout whose training code runs (default: this one)")
    args, extra = parser.parse_known_args(argv)
    extra = [item for item in extra if item != "--"]
    print(machine())
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        train = folder / f"coqa{args.passages}.json"
        data = coqa_passages(args.passages)
        train.write_text(json.dumps(data))
        questions = sum(len(d["questions"]) for d in data["data"])
        print(f"data: {args.passages} passages, {questions} questions ({args.task}), batch {args.batch_size}, "
              f"max_length {args.max_length}, {args.steps} steps, validation every {args.eval_steps}; "
              f"code {args.code}; extra {extra or 'none'}")
        result = run_job(Path(args.code).resolve(), train, folder, args, extra)
    metrics = result["metrics"]
    tokens, runtime = metrics["train_tokens"], metrics["train_runtime_s"]
    print(f"peak RSS {result['peak_rss'] / 2**30:.2f} GiB · {tokens} trained tokens in {runtime:.1f} s of training "
          f"(with validation) = {tokens / max(runtime, 1e-9):.1f} tokens/s · job wall {result['wall_s']:.0f} s · "
          f"eval_loss {metrics.get('eval_loss')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
