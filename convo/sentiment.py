"""Sentiment strength of a question, for ranking candidates by feeling as well as likelihood.

``feeling(question, user_message)`` is a number in 0..1 from VADER (``vaderSentiment``, a rule-based
scorer that ships its lexicon: offline, fast, no model). The question ranking in
:mod:`convo.questions` and the follow-up ranking in :mod:`convo.chat` add ``weight * feeling`` to a
candidate's score when the sentiment option is on, and show the part next to the others.
"""
from __future__ import annotations

import functools

DEFAULT_WEIGHT = 0.3
"""Weight the Questions tab and the chat use when the sentiment option is on: about the share of
diversity in the question score, so feeling breaks near-ties without overruling relevance."""


@functools.lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def strength(text: str) -> float:
    """How strongly ``text`` feels, positive or negative: ``|compound|`` of VADER, in 0..1.

    >>> strength("What is the capital?"), strength("What do you love most about Norway?") > 0.5
    (0.0, True)
    """
    if not text or not text.strip():
        return 0.0
    return abs(_analyzer().polarity_scores(text)["compound"])


def feeling(question: str, user_message: str | None = None) -> float:
    """The sentiment part of a question's score, in 0..1.

    The question's own strength; when the user's last message is given, scaled by
    ``(1 + strength(user_message)) / 2``: a user who spoke with feeling makes feeling in the question
    count fully, a flat message counts it half (so a neutral chat still prefers likely questions).
    """
    own = strength(question)
    if user_message is None:
        return own
    return own * (1.0 + strength(user_message)) / 2.0
