"""How often the Chat's follow-up suggestions name nothing ("What do you think?", "What's your plan?"):
``convo.chat.follow_up_questions`` on the bundled model after 16 one-turn conversations, 3 seeds
each, three suggestions a list.

    python benchmarks/follow_up_generic.py [--seeds 3] [--show]

Each call's scored candidates are kept, so the same candidates are ranked both ways: as convo ranks
them (a question that names nothing, :func:`convo.filters.is_generic`, after the others) and by score
alone (the reference: convo until 2026-12-05). Printed: suggestions shown that name nothing, lists
headed by one, and lists whose suggestions differ (``--show`` prints those, before and after).
"""
from __future__ import annotations

import argparse
from dataclasses import replace

from common import machine

CONVERSATIONS = [
    ("I just came back from a hiking trip in Norway.",
     "That sounds amazing! Norway has some of the most beautiful fjords and mountains in the world."),
    ("I'm learning to play the cello, it's harder than I thought.",
     "The cello takes patience: bowing and intonation both need a lot of practice at first."),
    ("My sister is getting married next month and I have to give a speech.",
     "Congratulations to her! A good wedding speech is short, personal and warm."),
    ("I started a vegetable garden on my balcony.",
     "Great idea! Tomatoes, herbs and lettuce grow well in containers on a sunny balcony."),
    ("We adopted a cat from the shelter yesterday.",
     "How wonderful! Give her a quiet room for the first days so she can get used to her new home."),
    ("I'm thinking about quitting my job to start a bakery.",
     "That's a big step. Many bakers start with a market stall to test their recipes before opening a shop."),
    ("I ran my first marathon on Sunday!", "Congratulations! Finishing a marathon is a huge achievement."),
    ("I'm moving to Japan for work in the spring.",
     "What an adventure! Learning some basic Japanese before you go will help a lot."),
    ("My grandfather taught me to fish when I was six.",
     "What a lovely memory. Fishing with a grandparent teaches patience and gives you long talks by the water."),
    ("I failed my driving test again today.",
     "I'm sorry, that's frustrating. Many people need a few tries; the examiner's notes can show what to practise."),
    ("I've been reading a lot of science fiction lately.",
     "Science fiction is a great genre, from Asimov's robots to Le Guin's worlds, it makes you think about the future."),
    ("Our team won the regional chess tournament!",
     "Congratulations to the whole team! Winning a regional tournament takes a lot of preparation."),
    ("I can't sleep well since I started the night shift.",
     "Night shifts are hard on sleep. Blackout curtains and a fixed sleep schedule, even on days off, can help."),
    ("I want to learn to cook Indian food.",
     "Indian cooking is very rewarding. A simple dal or chana masala is a good place to start, with a few key spices."),
    ("My son just started primary school.",
     "That's a big milestone for both of you! The first weeks can be tiring while he gets used to the new routine."),
    ("I bought an old motorbike and I'm restoring it.",
     "Restoring a motorbike is a great project. Keeping photos of each step helps a lot when you put it back together."),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--show", action="store_true", help="print the lists that differ, before and after")
    args = parser.parse_args()
    from convo import chat, filters
    from convo.engine import get_model

    print(machine())
    lm = get_model("bundled")
    scored: list = []
    follow_up = chat._follow_up

    def keeping(*a):  # every scored candidate of a call, in the order convo scored them
        made = follow_up(*a)
        scored.append(made)
        return made

    chat._follow_up = keeping
    n, lists, shown = 3, 0, {"convo": 0, "by score": 0}
    headed, differ = dict(shown), 0
    for seed in range(args.seeds):
        for user, assistant in CONVERSATIONS:
            scored.clear()
            messages = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
            got = [f.text for f in chat.follow_up_questions(lm, messages, n=n,
                                                             sampling=replace(chat.CURIOUS_SAMPLING, seed=seed))]
            reference = [f.text for f in sorted(scored, key=lambda f: -f.score)[:n]]
            lists += 1
            for name, texts in (("convo", got), ("by score", reference)):
                shown[name] += sum(map(filters.is_generic, texts))
                headed[name] += bool(texts) and filters.is_generic(texts[0])
            if got != reference:
                differ += 1
                if args.show:
                    print(f"seed {seed}, {user!r}\n  by score: {reference}\n  convo:    {got}")
    total = lists * n
    for name in ("by score", "convo"):
        print(f"{name:>8}: suggestions that name nothing {shown[name]} of {total}, lists headed by one "
              f"{headed[name]} of {lists}")
    print(f"lists that differ: {differ} of {lists}")


if __name__ == "__main__":
    main()
