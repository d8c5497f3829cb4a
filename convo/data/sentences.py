"""Sentences and the spans a single question may be about, shared by the training examples of the
``qg`` task and the Questions pipeline, so a model is trained on the span it is later asked about.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from .. import filters

ABBREVIATIONS = frozenset("mr mrs ms dr prof st sr jr vs etc e.g i.e no fig approx mt inc ltd co ca cf al".split())
PRONOUN_START = frozenset("it its they their them this these those he she his her such there that".split())
"""A sentence starting with one of these needs the sentence before it to make sense on its own."""
MIN_TARGET_WORDS = 4
"""A sentence shorter than this is joined with the one before it."""


_LIST_MARKER = r"[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+"
"""A list item's marker at a line's start: "- ", "* ", "+ ", "• ", "3. ", "3) "."""
_SENTENCE_END = re.compile(
    r"[。！？]+[」』”’）)\]]*"  # Chinese and Japanese: no space follows
    r"|[.!?؟۔।]+[\"'”’»)\]]*(?=\s+[\"'“‘«(\[#*-]?(\w))"  # then a word that is not lowercase (see below)
    r"|\n[ \t]*\n|\n(?=[ \t]*#)|^[ \t]*#[^\n]*\n"
    rf"|(?P<item>^{_LIST_MARKER})", re.MULTILINE)  # (see _list_item)
_MARKER = re.compile(_LIST_MARKER)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (whitespace trimmed; paragraph breaks and
    Markdown headings end a sentence; common abbreviations and initials do not). A sentence mark
    ends one before a capital, a digit or a letter of a script without case (Arabic, Hindi...), and
    Chinese and Japanese full stops end one with no space after them.

    >>> t = "Dr. Who met J. Smith. It rained!  New day"
    >>> [t[s:e] for s, e in split_sentences(t)]
    ['Dr. Who met J. Smith.', 'It rained!', 'New day']
    >>> t = "长城是古代的防御工程。它始建于春秋战国时期！为什么这么长？"
    >>> [t[s:e] for s, e in split_sentences(t)]
    ['长城是古代的防御工程。', '它始建于春秋战国时期！', '为什么这么长？']
    >>> t = "النحل يصنع العسل. هل تعرف كيف؟ إنه يجمع الرحيق."
    >>> [t[s:e] for s, e in split_sentences(t)]
    ['النحل يصنع العسل.', 'هل تعرف كيف؟', 'إنه يجمع الرحيق.']

    Each item of a list is one (without its marker), with or without a full stop:

    >>> t = "Fruit:\\n- Apples are rich in fiber.\\n- Bananas contain potassium\\n2) Kiwis"
    >>> [t[s:e] for s, e in split_sentences(t)]
    ['Fruit:', 'Apples are rich in fiber.', 'Bananas contain potassium', 'Kiwis']
    """
    cuts = []  # (where a sentence ends, where the next may start)
    for m in _SENTENCE_END.finditer(text):
        if m.group("item") is not None:
            if _list_item(text, m.start()):
                cuts.append((m.start(), m.end()))
            continue
        if m.group(1) is not None and m.group(1).islower():
            continue
        if m.group().startswith(".") and _ends_with_abbreviation(text, m.start()):
            continue
        cuts.append((m.end(), m.end()))
    spans, start = [], 0
    for end, after in cuts + [(len(text), len(text))]:
        span = _trimmed(text, start, end)
        if span:
            spans.append(span)
        start = max(start, after)
    return spans


def _list_item(text: str, start: int) -> bool:
    """Whether the line at ``start``, which opens with a list marker ("- ", "3. "), is an item of a list:
    the line before it is blank, ends a sentence or a lead-in (".", ":", "!", "?"), or is an item too, or
    the line after it is one. Else the marker is the text's own: a wrapped line of prose ("...finished
    in position\\n3. After that...", "am\\n9. November", "a moment\\n- and then...").

    >>> t = "The team finished in position\\n3. After that the coach left."
    >>> [t[s:e] for s, e in split_sentences(t)]
    ['The team finished in position\\n3. After that the coach left.']
    """
    before = text[:start].rstrip(" \t")
    if not before.strip():
        return bool(_MARKER.match(_next_line(text, start)))
    previous = before.rstrip("\n").rsplit("\n", 1)[-1]
    if before.endswith("\n\n") or not previous.strip() or previous.rstrip()[-1] in ".:!?" or _MARKER.match(previous):
        return True
    return bool(_MARKER.match(_next_line(text, start)))


def _next_line(text: str, start: int) -> str:
    end = text.find("\n", start)
    return "" if end < 0 else text[end + 1:].split("\n", 1)[0]


def _ends_with_abbreviation(text: str, dot: int) -> bool:
    before = re.search(r"([A-Za-z.]+)$", text[max(0, dot - 12):dot])
    if not before:
        return False
    word = before.group(1).lower().strip(".")
    return word in ABBREVIATIONS or (len(word) == 1 and text[dot - 1].isupper())


def _trimmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def sentence_units(text: str, sentences: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """One span per sentence that a single question may be about: the sentence, joined with the one
    before it when it opens with a pronoun ("It was designed by ...") or is too short to stand alone.

    >>> t = "The tower is in Paris. It opened in 1889."
    >>> [t[s:e] for s, e in sentence_units(t, split_sentences(t))]
    ['The tower is in Paris.', 'The tower is in Paris. It opened in 1889.']

    A line before it that ends no sentence (a heading, a byline) is not joined: it does not say who
    "it" is, and a question about the two would be about the heading.

    >>> t = "Tower history\\n\\nIt opened in 1889 for the fair."
    >>> [t[s:e] for s, e in sentence_units(t, split_sentences(t))]
    ['Tower history', 'It opened in 1889 for the fair.']
    """
    units = []
    for i, (s, e) in enumerate(sentences):
        ws = filters.words(text[s:e])
        if i > 0 and (len(ws) < MIN_TARGET_WORDS or (ws and ws[0] in PRONOUN_START)) \
                and not is_line(text, sentences[i - 1]):
            s = sentences[i - 1][0]
        units.append((s, e))
    return units


_ENDS_SENTENCE = re.compile(r"""[.!?…]["'”’)\]]*$""")


def is_line(text: str, span: tuple[int, int]) -> bool:
    """Whether ``span`` is a heading or a table row: a line of its own that ends no sentence
    ("Communication", "Kingdom: Animalia").

    >>> t = "Bees\\nBees make honey.\\nKingdom: Animalia"
    >>> [is_line(t, span) for span in [(0, 4), (5, 21), (22, 39)]]
    [True, False, True]
    """
    start, end = span
    line = text[start:end]
    opens = text.rfind("\n", 0, start) + 1  # (a list item's line opens with its marker)
    alone = (start == opens or bool(_MARKER.fullmatch(text[opens:start]))) and (end == len(text) or text[end] == "\n")
    return alone and "\n" not in line and not _ENDS_SENTENCE.search(line)


def focus_unit(text: str, question: str, answer: str | None = None) -> str:
    """The span of ``text`` a human question is about, as the Questions pipeline would target it:
    the unit of the sentence that holds the answer (found case-insensitively), else the unit sharing
    most content words with the question and its answer; ``text`` itself when it has no sentences.

    >>> t = "Marta lived on Pine Street. She had a red bike. Her brother Tom was nine."
    >>> focus_unit(t, "What colour was her bike?", "red")
    'Marta lived on Pine Street. She had a red bike.'
    >>> focus_unit(t, "How old was Tom?", "nine years")  # opens with "Her": joined with the one before
    'She had a red bike. Her brother Tom was nine.'
    """
    layout = _layout(text)
    if not layout.sentences:
        return text.strip()
    at = layout.lower.find(answer.strip().lower()) if answer and answer.strip() else -1
    if at >= 0:
        index = max(i for i, (s, _) in enumerate(layout.sentences) if s <= at or i == 0)
    else:
        wanted = set(filters.content_words(f"{question} {answer or ''}"))
        hits = [len(wanted & words) for words in layout.content_words()]
        index = hits.index(max(hits))
    start, end = layout.units[index]
    return text[start:end]


class _Layout:
    """A passage's sentences and units, worked out once for all its questions (a CoQA passage has
    about 15: checking a 108k-question file took 28 s, splitting each passage once per question)."""

    def __init__(self, text: str):
        self.text, self.lower = text, text.lower()
        self.sentences = split_sentences(text)
        self.units = sentence_units(text, self.sentences)
        self._content: list[set[str]] | None = None

    def content_words(self) -> list[set[str]]:
        if self._content is None:
            self._content = [filters.content_words(self.text[s:e]) for s, e in self.sentences]
        return self._content


@functools.lru_cache(maxsize=8)
def _layout(text: str) -> _Layout:
    # A passage's questions come one after another: a small cache holds it while they do.
    return _Layout(text)
