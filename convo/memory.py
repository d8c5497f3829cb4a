"""Per-user memory: facts a user states about themselves in chat, kept for that user only.

``extract_facts("I just got back from hiking in Norway.")`` finds first-person statements with a few
offline rules and turns each into a :class:`Fact` in the second person ("You just got back from
hiking in Norway") with a follow-up question built from it ("How was the hiking in Norway?").
``remember`` keeps them in the SQLite store under an owner key (:func:`owner_key`: the signed-in
Hugging Face user, else a random id the browser keeps); ``follow_ups`` offers the remembered
questions in a later conversation. Nothing is remembered when the user turned memory off; on a
shared Space it is off until the user turns it on (:func:`enabled_by_default`).
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from . import filters
from .store import Store, is_valid_id

MAX_WORDS = 8
"""Longest object of a fact, in words ("hiking in Norway"): longer ones are usually not a fact."""
MAX_MESSAGE_CHARS = 2000
"""Only the start of a long message is searched (a pasted text is not about its sender)."""

_END = r"(?P<x>[^,.;:!?\n]+)"
_RULES = (
    ("back_from", re.compile(r"\bI(?:'ve| have)?\s+(?:just\s+|recently\s+)?(?:got|gotten|came|come|returned)\s+"
                             r"(?:back\s+|home\s+)?from\s+" + _END, re.IGNORECASE)),
    ("likes", re.compile(r"\bI\s+(?:really\s+|also\s+|just\s+)?(?P<v>like|love|enjoy|adore)\s+" + _END, re.IGNORECASE)),
    ("lives", re.compile(r"\bI\s+(?P<v>live|work|study)\s+(?P<p>in|at|for|as)\s+" + _END, re.IGNORECASE)),
    ("from", re.compile(r"\bI(?:'m|\s+am)\s+(?:originally\s+)?from\s+" + _END, re.IGNORECASE)),
    ("is_a", re.compile(r"\bI(?:'m|\s+am)\s+(?P<x>(?:a|an)\s+[^,.;:!?\n]+)", re.IGNORECASE)),
    ("my_is", re.compile(r"\bmy\s+(?P<a>[a-z]+(?:\s+[a-z]+)?)\s+is\s+" + _END, re.IGNORECASE)),
    # what a user does and has: the things a curious assistant asks about later
    ("does", re.compile(r"\bI\s+(?:also\s+|still\s+|sometimes\s+|often\s+)?(?P<v>grow|play|speak|cook|bake|paint|knit|"
                        r"sew|collect|coach|teach|volunteer|brew|(?:run|own|manage)(?=\s+(?:a|an|my|our)\s))\s+" + _END,
                        re.IGNORECASE)),
    ("doing", re.compile(r"\bI(?:'m|\s+am)\s+(?:currently\s+|still\s+|now\s+)?(?P<v>learning|training\s+for|"
                         r"writing|building|renovating|planning|organi[sz]ing|working\s+on)\s+" + _END, re.IGNORECASE)),
    ("has", re.compile(r"\bI\s+(?:have|have\s+got|'ve\s+got)\s+(?P<x>(?P<n>a|an|one|two|three|four|five|\d+)\s+(?:[a-z]+\s+)?"
                       r"(?P<k>dogs?|cats?|puppy|puppies|kittens?|horses?|parrots?|rabbits?|hamsters?|kids?|children|"
                       r"child|sons?|daughters?|grandchildren|grandkids?|twins|brothers?|sisters?)\b[^,.;:!?\n]*)",
                    re.IGNORECASE)),
)
_CUT = re.compile(r"\s+(?:and|but|because|so|which|who|where|when|although|though|if)\s+.*$", re.IGNORECASE)
_FLIP = {"i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself", "i'm": "you're",
         "i've": "you've", "am": "are", "we": "you", "our": "your", "us": "you"}
_VAGUE = frozenset("it that this them you him her things something stuff everything anything".split())
_ING = {"live": "living", "work": "working", "study": "studying", "grow": "growing", "play": "playing",
        "speak": "speaking", "cook": "cooking", "bake": "baking", "paint": "painting", "knit": "knitting",
        "sew": "sewing", "collect": "collecting", "coach": "coaching", "teach": "teaching",
        "volunteer": "volunteering", "brew": "brewing", "run": "running", "own": "owning", "manage": "managing"}


@dataclass(frozen=True)
class Fact:
    """A statement about the user, in the second person, and the follow-up question it suggests."""

    text: str
    question: str | None


def enabled_by_default() -> bool:
    """Memory is on for a local app and opt-in on a shared Hugging Face Space (``SPACE_ID`` set)."""
    return not os.environ.get("SPACE_ID")


def owner_key(username: str | None, browser_id: str | None) -> str | None:
    """Whose memory this is: ``hf:<username>`` when signed in, else ``browser:<id>`` for the random
    id the browser keeps (None when there is neither, or the id is not one we made)."""
    if username:
        return f"hf:{username}"
    if is_valid_id(browser_id):
        return f"browser:{browser_id}"
    return None


def flip(text: str) -> str:
    """First person -> second person, word by word ("my trip to Rome" -> "your trip to Rome")."""
    return re.sub(r"[A-Za-z']+", lambda m: _FLIP.get(m.group().lower(), m.group()), text)


def _object(raw: str) -> str | None:
    """The fact's object: cut at a clause word, trimmed; None when vague or too long."""
    text = _CUT.sub("", raw.strip()).strip(" '\"")
    words = text.split()
    if not words or len(words) > MAX_WORDS or words[0].lower() in _VAGUE or words[0].lower() in ("to", "not"):
        return None
    return flip(text)


def _fact(kind: str, match: re.Match) -> Fact | None:
    x = _object(match.group("x"))
    if x is None:
        return None
    if kind == "back_from":
        lead = "the " if x.split()[0].lower().endswith("ing") else ""
        return Fact(f"You just got back from {x}", f"How was {lead}{x}?")
    if kind == "likes":
        verb = match.group("v").lower()
        return Fact(f"You {verb} {x}", f"What do you {verb} most about {x}?")
    if kind == "lives":
        verb, prep = match.group("v").lower(), match.group("p").lower()
        return Fact(f"You {verb} {prep} {x}", f"How do you like {_ING[verb]} {prep} {x}?")
    if kind == "from":
        return Fact(f"You are from {x}", f"What do you miss most about {x}?")
    if kind == "does":
        verb = match.group("v").lower()
        return Fact(f"You {verb} {x}", f"How did you get into {_ING[verb]} {x}?")
    if kind == "doing":
        verb = " ".join(match.group("v").lower().split())
        return Fact(f"You are {verb} {x}", f"How is {verb} {x} going?")
    if kind == "has":
        one = match.group("n").lower() in ("a", "an", "one")
        kin = match.group("k").lower()
        return Fact(f"You have {x}", f"How {'is' if one else 'are'} your {kin} doing?")
    if kind == "is_a":
        return Fact(f"You are {x}", f"What do you enjoy most about being {x}?")
    about = flip(match.group("a")).lower()
    if about.split()[-1] == "name":
        return Fact(f"Your name is {x}", None)
    if "favourite" in about or "favorite" in about:
        return Fact(f"Your {about} is {x}", f"What makes {x} your {about}?")
    return Fact(f"Your {about} is {x}", f"How is your {about} these days?")


def extract_facts(message: str) -> list[Fact]:
    """Facts the user states about themselves in ``message`` (first-person statements only; a
    question is never a fact).

    >>> [f.text for f in extract_facts("I just got back from hiking in Norway! My dog is called Rex.")]
    ['You just got back from hiking in Norway', 'Your dog is called Rex']
    >>> extract_facts("I just got back from hiking in Norway")[0].question
    'How was the hiking in Norway?'
    """
    facts: list[Fact] = []
    text = (message or "")[:MAX_MESSAGE_CHARS].replace("\u2019", "'")
    for sentence in re.split(r"(?<=[.!?\n])\s*", text):
        if filters.ends_question(sentence):
            continue
        for kind, pattern in _RULES:
            for match in pattern.finditer(sentence):
                fact = _fact(kind, match)
                if fact and fact.text not in {f.text for f in facts}:
                    facts.append(fact)
    return facts


def remember(store: Store, owner: str, message: str) -> list[Fact]:
    """Keep the facts of ``message`` for ``owner``; returns the facts found."""
    facts = extract_facts(message)
    for fact in facts:
        store.remember(owner, fact.text, fact.question)
    return facts


def follow_ups(store: Store, owner: str, messages: Sequence[dict], limit: int = 1) -> list[str]:
    """Questions built from what ``owner`` told the chat before, newest first, leaving out facts
    stated in this conversation (the model sees those) and questions it already holds."""
    said_here = {f.text for m in messages if m["role"] == "user" for f in extract_facts(m["content"])}
    text_here = " ".join(m["content"] for m in messages).lower()
    questions = [m.question for m in store.memories(owner)
                 if m.question and m.fact not in said_here and m.question.lower() not in text_here]
    return questions[:limit]
