"""Replies that fall into a loop: where the repetition that ends a text begins, and a growing text
that stops there.

A small model at a low temperature can repeat one phrase until the token limit. Measured with
``benchmarks/reply_loops.py``: at the bundled model's recommended sampling, 11 of 36 chat replies
ended in a loop ("Don't forget to pack a sleeping bag with a tent." again and again).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .generation import close_source

LOOP_COPIES, LOOP_CHARS, LOOP_BLOCK = 3, 64, (8, 400)
"""A reply ends in a loop when its text ends in at least ``LOOP_COPIES`` back-to-back copies of one
block of 8-400 characters, ``LOOP_CHARS`` or more in all ("a mix of a mix of a mix of ..."). Text
that repeats a shorter block is left alone: "ha ha ha", a row of dashes, a run of zeros; so is
the inside of a code block, where lines may repeat."""


def loop_start(text: str) -> int | None:
    """Where the repetition ends the text in a loop begins: the end of its first copy, so that
    ``text[:loop_start(text)]`` keeps the block once. None when the text does not end in a loop.

    >>> text = "Beagles are curious. They love to chew shoes. " * 4
    >>> text[:loop_start(text)]
    'Beagles are curious. They love to chew shoes. '
    >>> loop_start("Sit, stay, come. Sit, stay, come. Good dog!") is None
    True
    """
    n = len(text)
    shortest, longest = LOOP_BLOCK
    if text.count("```") % 2:  # inside a code block, where lines may well repeat
        return None
    for period in range(1, longest + 1):  # the shortest block that repeats
        span = max(LOOP_COPIES * period, LOOP_CHARS)
        if span > n:
            break
        if text[-1] != text[-1 - period] or text[n - span + period:] != text[n - span:n - period]:
            continue
        if period < shortest:  # (its multiples repeat too: "ha ha ha " is also "ha ha ha ha ha ha ")
            return None
        start = n - span  # the periodic stretch reaches back further while characters repeat
        while start > 0 and text[start - 1] == text[start - 1 + period]:
            start -= 1
        # any cut within the second copy keeps the block once: the first after a sentence, else
        # after a word ("shoes. They chew shoes. They" is cut after "shoes. ", not after "shoes")
        cuts = range(start + period, min(start + 2 * period, n) + 1)
        return next((c for c in cuts if text[c - 1].isspace() and text[c - 2] in ".!?"),
                    next((c for c in cuts if text[c - 1].isspace()), start + period))
    return None


def until_loop(texts: Iterable[str], on_loop: Callable[[], object] | None = None) -> Iterator[str]:
    """A growing text (see :func:`accumulate`) that stops at a loop: the first state that ends in one
    (:func:`loop_start`) is cut to keep the repeated block once, and the source is closed, so its
    generation ends. A small model at a low temperature can repeat one phrase to the token limit:
    the bundled model's reply about a beagle went "a mix of a mix of ..." for most of its length.
    ``on_loop()`` is called when it cuts one.

    >>> list(until_loop(["Hi. ", "Hi. Yes, a mix of " + "a mix of " * 8]))
    ['Hi. ', 'Hi. Yes, a mix of']
    """
    try:
        for text in texts:
            start = loop_start(text)
            if start is not None:
                if on_loop is not None:
                    on_loop()
                yield text[:start].rstrip()
                return
            yield text
    finally:
        close_source(texts)
