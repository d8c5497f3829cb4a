"""Write a realistic official-CoQA file of N short stories, for tests that need bulk data.

Stories are built from a few templates with varied names, places and things; every answer
span points at the story text, exactly as in the real CoQA release.
Run: ``python tests/data/make_coqa.py OUT.json [N]``  (or import ``make_coqa`` / ``write_coqa``).
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

NAMES = [("Anna", "she", "her"), ("Tom", "he", "his"), ("Priya", "she", "her"), ("Jonas", "he", "his"),
         ("Mei", "she", "her"), ("Carlos", "he", "his"), ("Fatima", "she", "her"), ("Oliver", "he", "his"),
         ("Ines", "she", "her"), ("Kwame", "he", "his"), ("Sofia", "she", "her"), ("Liam", "he", "his")]
FRIENDS = ["Grace", "Daniel", "Yusuf", "Elena", "Hiro", "Nadia", "Peter", "Amara", "Lucas", "Zoe"]
JOBS = ["baker", "nurse", "bus driver", "teacher", "carpenter", "librarian", "fisherman", "painter"]
TOWNS = ["Millbrook", "Ashford", "Kelso", "Port Ellen", "Brightwater", "Stonehaven", "Larkfield", "Redcliff"]
FEATURES = ["the sea", "a large forest", "the mountains", "a wide river", "an old castle", "a quiet lake"]
PLACES = [("market", "fresh bread"), ("bookshop", "a newspaper"), ("harbour", "fish for dinner"),
          ("bakery", "two apple pies"), ("post office", "stamps"), ("farm shop", "a dozen eggs")]
CITIES = ["London", "Lisbon", "Nairobi", "Toronto", "Osaka", "Buenos Aires", "Oslo", "Delhi"]
EVENTS = ["music festival", "boat race", "book fair", "flower show", "chess tournament", "street market"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["March", "April", "May", "June", "July", "August", "September"]
PETS = [("dog", "Biscuit"), ("cat", "Pepper"), ("parrot", "Captain"), ("rabbit", "Clover"), ("goat", "Nibbles")]
COLOURS = ["red", "green", "yellow", "blue", "white", "orange"]


def _visit_story(rng: random.Random) -> tuple[str, list[tuple[str, str, str]]]:
    name, he, his = rng.choice(NAMES)
    friend, job, town = rng.choice(FRIENDS), rng.choice(JOBS), rng.choice(TOWNS)
    place, item = rng.choice(PLACES)
    city, event, day = rng.choice(CITIES), rng.choice(EVENTS), rng.choice(DAYS)
    age, date = rng.randint(22, 70), f"{rng.randint(2, 28)} {rng.choice(MONTHS)}"
    story = (f"{name} was a {age}-year-old {job} who lived in {town}, a small town near {rng.choice(FEATURES)}. "
             f"Every {day}, {he} walked to the {place} to buy {item}. One morning {he} met {friend}, an old friend "
             f"from school, who had just come back from {city}. {friend} told {name} about a {event} that would take "
             f"place on {date}. {name} decided to go, and {he} asked {his} neighbour to look after the house. "
             f"The {event} was crowded, but {name} and {friend} stayed until the very end.")
    turns = [(f"What was {name}'s job?", f"a {job}", f"a {age}-year-old {job}"),
             (f"Where did {he} live?", f"in {town}", f"lived in {town}"),
             (f"What did {he} do every {day}?", f"walked to the {place} to buy {item}", f"walked to the {place} to buy {item}"),
             (f"Who did {he} meet one morning?", friend, f"{he} met {friend}"),
             (f"Where had {friend} been?", city, f"just come back from {city}"),
             (f"What did {friend} talk about?", f"a {event}", f"about a {event}"),
             ("When was it?", f"on {date}", f"on {date}"),
             ("Who looked after the house?", f"{his} neighbour", f"{his} neighbour to look after the house")]
    return story, turns


def _pet_story(rng: random.Random) -> tuple[str, list[tuple[str, str, str]]]:
    name, he, his = rng.choice(NAMES)
    (pet, pet_name), colour, town = rng.choice(PETS), rng.choice(COLOURS), rng.choice(TOWNS)
    hours, friend = rng.randint(2, 9), rng.choice(FRIENDS)
    story = (f"{name} had a {pet} called {pet_name} that lived with {his} family in {town}. One evening {pet_name} "
             f"slipped out through the {colour} garden gate and did not come back. {name} searched the streets for "
             f"{hours} hours with {his} friend {friend}. They put up posters in every shop window. The next morning "
             f"a farmer phoned to say that {pet_name} was sleeping in his barn. {name} was so happy that {he} baked "
             f"the farmer a cake.")
    turns = [(f"What was {pet_name}?", f"a {pet}", f"a {pet} called {pet_name}"),
             ("Where did the family live?", f"in {town}", f"in {town}"),
             (f"How did {pet_name} get out?", f"through the {colour} garden gate", f"through the {colour} garden gate"),
             (f"How long did {name} search?", f"{hours} hours", f"for {hours} hours"),
             ("Who helped?", friend, f"{his} friend {friend}"),
             (f"Where was {pet_name} found?", "in a farmer's barn", "sleeping in his barn"),
             (f"What did {name} do to thank the farmer?", "baked a cake", "baked the farmer a cake")]
    return story, turns


def _story(rng: random.Random, index: int) -> dict:
    story, turns = rng.choice((_visit_story, _pet_story))(rng)
    count = rng.randint(4, len(turns))
    questions, answers = [], []
    for turn_id, (question, answer, span) in enumerate(turns[:count], start=1):
        start = story.index(span)
        questions.append({"input_text": question, "turn_id": turn_id})
        answers.append({"span_start": start, "span_end": start + len(span), "span_text": span,
                        "input_text": answer, "turn_id": turn_id})
    story_id = f"{rng.getrandbits(120):030x}"
    return {"source": rng.choice(["mctest", "race", "gutenberg"]), "id": story_id, "filename": f"story_{index:04d}.txt",
            "story": story, "questions": questions, "answers": answers, "name": f"story_{index:04d}.txt"}


def make_coqa(n: int = 100, seed: int = 0) -> dict:
    """An official-CoQA dict with ``n`` stories of 4 to 8 turns each; the same for the same seed."""
    rng = random.Random(seed)
    return {"version": "1.0", "data": [_story(rng, index) for index in range(n)]}


def write_coqa(path: str | Path, n: int = 100, seed: int = 0) -> dict:
    """Write :func:`make_coqa` to ``path`` and return the dict that was written."""
    value = make_coqa(n, seed)
    Path(path).write_text(json.dumps(value, indent=1), encoding="utf-8")
    return value


if __name__ == "__main__":
    write_coqa(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100)
