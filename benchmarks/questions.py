"""Question generation speed on the bundled model: kept questions per second over the five fixed
passages of tests/data/passages, the share of model samples kept, and (reference, same process)
the cost of scoring candidates under the whole-chunk prompt instead of their sentence's prompt.

    python benchmarks/questions.py [-n 5] [--seed 0] [--no-reference]
"""
from __future__ import annotations

import argparse
import time

from common import ROOT, machine

PASSAGES = sorted((ROOT / "tests" / "data" / "passages").glob("*.txt"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="questions per passage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-reference", action="store_true", help="skip the whole-chunk scoring reference run")
    args = parser.parse_args()

    from convo import questions as qg
    from convo.engine import get_model
    from convo.settings import Sampling

    print(machine())
    started = time.monotonic()
    lm = get_model("bundled")
    print(f"model load: {time.monotonic() - started:.1f} s")
    settings = qg.QuestionSettings(sampling=Sampling(**{**qg.QG_SAMPLING.to_dict(), "seed": args.seed}))
    qg.question_run("Warm-up. The bee is an insect that makes honey.", 1, lm, settings=settings)

    total_s = kept = model_kept = generated = passed = 0
    print(f"{'passage':16} {'words':>5} {'s':>6} {'gen s':>6} {'score s':>7} {'kept':>4} {'model':>5} {'samples':>7}")
    for path in PASSAGES:
        passage = path.read_text(encoding="utf-8")
        run = qg.question_run(passage, args.n, lm, settings=settings)
        total_s += run.seconds
        kept += len(run.questions)
        model_kept += run.model_kept
        generated += run.generated
        passed += run.model_kept + sum(q.source == "model" and q.reasons == ("ranked below the top n",) for q in run.dropped)
        print(f"{path.stem:16} {len(passage.split()):5} {run.seconds:6.1f} {run.timings['generate']:6.1f} "
              f"{run.timings['score']:7.1f} {len(run.questions):4} {run.model_kept:5} {run.generated:7}")
    print(f"questions/s: {kept / total_s:.2f} ({kept} questions in {total_s:.1f} s, "
          f"{total_s / len(PASSAGES):.1f} s per passage)")
    print(f"model samples kept: {model_kept}/{generated} = {model_kept / generated:.2f} "
          f"(passed every filter: {passed}/{generated} = {passed / generated:.2f})")

    if not args.no_reference:
        reference_scoring(lm, settings, args.n)


def reference_scoring(lm, settings, n: int) -> None:
    """Reference: score one passage's candidates under the whole-chunk prompt (one continuation_logprobs
    call per chunk) against the per-sentence prompts convo uses, on the same candidates."""
    from convo import questions as qg
    from convo.engine.generation import continuation_logprobs

    passage = PASSAGES[0].read_text(encoding="utf-8")
    run = qg.question_run(passage, n, lm, settings=settings)
    texts = [q.text for q in run.questions + run.dropped if q.source == "model" and q.text.endswith("?")]
    by_sentence = [(qg.scoring_prompt("fewshot", "open", passage, q.span, None, ""), q.text)
                   for q in run.questions + run.dropped if q.text in texts]
    clock = time.monotonic()
    for prompt, text in by_sentence:
        continuation_logprobs(lm, prompt, [" " + text])
    per_sentence = time.monotonic() - clock
    clock = time.monotonic()
    continuation_logprobs(lm, qg.fewshot_prompt(passage), [" " + t for t in texts])
    per_chunk = time.monotonic() - clock
    print(f"reference scoring ({PASSAGES[0].stem}, {len(texts)} candidates): whole-chunk prompt {per_chunk:.1f} s, "
          f"sentence prompts {per_sentence:.1f} s, ratio {per_chunk / per_sentence:.2f}x")

if __name__ == "__main__":
    main()
