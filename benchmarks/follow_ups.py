"""How long the Chat's follow-up suggestions take: ``convo.chat.follow_up_questions`` on the bundled
model after a two-turn conversation, with the candidates scored on the fast engine (the default)
against scoring them with the model's own forward (the reference), taking turns.

    python benchmarks/follow_ups.py [--repeats 7]

Each call draws six candidate questions (one or more batches, on the engine either way), then scores
the usable ones by their mean token log-probability. The model's own forward (the path of a model the
engine cannot run: a GPU, an adapter) runs the prompt once with its cache, then the candidates, in
fp32; the engine finds the prompt in its prefix cache (drawing the candidates put it there) and feeds
each candidate's tokens in one decode step. Both score the same tokens, so the figures also print how
far apart the two scores of the same questions are. (Until 2026-12-05 the model's forward ran the
prompt again for every candidate: benchmarks/README.md has that run.)
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from common import machine

HISTORY = [
    {"role": "user", "content": "Hi! I just adopted a puppy and I have no idea how to train her."},
    {"role": "assistant", "content": "Congratulations! Start with short sessions of five minutes, reward good "
     "behaviour with treats right away, and be patient and consistent. Crate training helps with house "
     "training, and socialising her early with people and other dogs makes a calmer adult dog."},
    {"role": "user", "content": "She is a beagle and she chews shoes."},
    {"role": "assistant", "content": "Beagles are curious and love to chew, especially while teething. Give her "
     "chew toys, keep shoes out of reach, and when she picks up a shoe, swap it for a toy and praise her."},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="calls each way (the figures are medians)")
    args = parser.parse_args()
    from convo import chat
    from convo.engine import generation, get_model
    from convo.settings import ModelSpec

    print(machine())
    lm = get_model(ModelSpec("bundled"))
    engine_scores = chat.continuation_logprobs

    def forward_scores(lm, prompt, continuations):  # the reference: the model's own forward
        return generation.run_in_fresh_thread(generation._continuation_logprobs, lm, prompt, list(continuations))

    ways = {"engine": engine_scores, "model forward": forward_scores}
    times: dict[str, list[float]] = {name: [] for name in ways}
    scoring: dict[str, list[float]] = {name: [] for name in ways}
    for name, score in ways.items():  # warm-up: the engine is built, the prompt's start cached
        chat.continuation_logprobs = score
        chat.follow_up_questions(lm, HISTORY, n=3, sampling=replace(chat.CURIOUS_SAMPLING, seed=1000))
    gaps = []
    for i in range(args.repeats):
        for name, score in ways.items():  # the same seed each way: the same candidates
            spent = []

            def timed(lm, prompt, continuations, score=score, spent=spent):
                started = time.perf_counter()
                result = score(lm, prompt, continuations)
                spent.append(time.perf_counter() - started)
                return result

            chat.continuation_logprobs = timed
            started = time.perf_counter()
            questions = chat.follow_up_questions(lm, HISTORY, n=3, sampling=replace(chat.CURIOUS_SAMPLING, seed=i))
            times[name].append(time.perf_counter() - started)
            scoring[name].append(sum(spent))
            print(f"  {name:>13}: {times[name][-1] * 1000:6.0f} ms, scoring {sum(spent) * 1000:5.0f} ms, "
                  f"{len(questions)} questions")
        prompt = generation.render_prompt(lm, [{"role": "system", "content": chat.CURIOUS_INSTRUCTION},
                                               {"role": "user", "content": chat.transcript(HISTORY)}])
        shown = [q.text for q in questions] or ["What is her name?"]
        gaps += [abs(a - b) for a, b in zip(engine_scores(lm, prompt, shown), forward_scores(lm, prompt, shown))]
    chat.continuation_logprobs = engine_scores
    median = {name: statistics.median(values) for name, values in times.items()}
    for name in ways:
        print(f"{name:>13} scoring, median of {args.repeats}: {median[name] * 1000:6.0f} ms a call "
              f"(scoring {statistics.median(scoring[name]) * 1000:5.0f} ms)")
    print(f"engine vs model forward: {median['model forward'] / median['engine']:.1f}x faster; the two scores of "
          f"the same question differ by at most {max(gaps):.3f} (mean log-prob per token; the floor is "
          f"{chat.LIKELIHOOD_FLOOR})")


if __name__ == "__main__":
    main()
