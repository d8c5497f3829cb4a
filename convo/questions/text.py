"""Text units of a passage (a Markdown file's read as its text): sentences as character spans,
over-long ones cut at word boundaries, packed into overlapping chunks, chunks picked evenly; and the
word-overlap measures (content stems, grounding, similarity, the sentence a question is about).
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence

from .. import filters
from ..data.sentences import split_sentences  # noqa: F401  (re-exported)
from .settings import Chunk


MARKDOWN_SUFFIXES = (".md", ".markdown")


def is_markdown(name: str) -> bool:
    """Whether a file of this name is read as Markdown (``markdown_to_text``)."""
    return name.lower().endswith(MARKDOWN_SUFFIXES)


_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_RULE = re.compile(r"^[ \t]*([-*_])([ \t]*\1){2,}[ \t]*$")
_TABLE_SEPARATOR = re.compile(r"^[ \t]*\|?[ \t]*:?-{2,}:?[ \t]*(\|[ \t]*:?-{2,}:?[ \t]*)*\|?[ \t]*$")
_LINK_DEFINITION = re.compile(r"^[ \t]{0,3}\[[^\]]+\]:\s*\S+.*$")
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_LINE_MARKERS = re.compile(r"^[ \t]*(?:>[ \t]?)*(?:[-*+][ \t]+(?:\[[ xX]\][ \t]+)?|\d{1,9}[.)][ \t]+)?")
_INLINE = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # an image: its alt text
    (re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\[[^\]]*\])"), r"\1"),  # a link: its text
    (re.compile(r"<(https?://[^>\s]+)>"), r"\1"),  # an autolink: the address
    (re.compile(r"</?[A-Za-z][^>\n]*>"), ""),  # an HTML tag
    (re.compile(r"(`+)(.+?)\1"), r"\2"),  # code
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # strong
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),  # emphasis (not a * in "2 * 3")
    (re.compile(r"(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),  # emphasis (not snake_case)
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),  # struck through
]


def markdown_to_text(markdown: str) -> str:
    """The text of a Markdown document, as a reader sees it: headings, list items and table rows each
    a line of their own (a heading also ends its paragraph), without the markup (``#``, ``**``,
    bullets, link targets, tags) and without code blocks. Questions were asked about "the **Eiffel
    Tower**".

    >>> print(markdown_to_text("# The tower\\nIt is **tall** ([more](http://x)).\\n\\n- Built in `1889`\\n\\n| m | year |\\n|---|---|\\n| 330 | 2022 |"))
    The tower
    <BLANKLINE>
    It is tall (more).
    <BLANKLINE>
    Built in 1889
    <BLANKLINE>
    m, year
    330, 2022
    """
    lines, fence = [], None
    for line in markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        opens = _FENCE.match(line)
        if fence or opens:  # a code block: left out, fences and all
            fence = None if fence and opens and opens.group(1) == fence else fence or opens.group(1)
            continue
        if _RULE.match(line) or _TABLE_SEPARATOR.match(line) or _LINK_DEFINITION.match(line):
            continue
        heading = _HEADING.match(line)
        if heading:
            lines += ["", heading.group(1), ""]
            continue
        line = line[_LINE_MARKERS.match(line).end():]
        if line.strip().startswith("|") or line.count("|") >= 2 and line.strip().endswith("|"):
            line = ", ".join(cell.strip() for cell in line.strip().strip("|").split("|"))
        for pattern, replacement in _INLINE:
            line = pattern.sub(replacement, line)
        lines.append(line.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def token_lengths(tokenizer, texts: Sequence[str]) -> list[int]:
    """Token count of each text (no special tokens), in one tokenizer call."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def split_long(text: str, spans: Sequence[tuple[int, int]], tokenizer, budget: int) -> list[tuple[int, int]]:
    """Cut every span longer than ``budget`` tokens into word-aligned pieces that fit."""
    result: list[tuple[int, int]] = []
    todo = list(spans)
    while todo:
        lengths = token_lengths(tokenizer, [text[s:e] for s, e in todo])
        again = []
        for (s, e), length in zip(todo, lengths):
            if length <= budget:
                result.append((s, e))
                continue
            words = [(m.start() + s, m.end() + s) for m in re.finditer(r"\S+", text[s:e])]
            if len(words) <= 1:  # one enormous "word": cut it by characters
                step = max(1, (e - s) * budget // (2 * length))
                again.extend((i, min(e, i + step)) for i in range(s, e, step))
                continue
            pieces = max(2, math.ceil(length / (0.8 * budget)))
            size = math.ceil(len(words) / pieces)
            again.extend((words[i][0], words[min(i + size, len(words)) - 1][1]) for i in range(0, len(words), size))
        todo = again
    return sorted(result)


def make_chunks(spans: Sequence[tuple[int, int]], lengths: Sequence[int], budget: int,
                overlap: int = 1) -> list[Chunk]:
    """Pack sentences into chunks of at most ``budget`` tokens; each chunk starts with the last
    ``overlap`` sentences of the one before (when they leave room for at least one new sentence).

    >>> [c.sentences for c in make_chunks([(0, 1), (2, 3), (4, 5)], [5, 5, 5], budget=10)]
    [((0, 1), (2, 3)), ((2, 3), (4, 5))]
    """
    chunks: list[Chunk] = []
    i = 0
    while i < len(spans):
        j, total = i, 0
        while j < len(spans) and (j == i or total + lengths[j] <= budget):
            total += lengths[j]
            j += 1
        group = tuple(spans[i:j])
        chunks.append(Chunk(len(chunks), group[0][0], group[-1][1], group))
        if j >= len(spans):
            break
        i = max(i + 1, j - overlap)
    return chunks


def pick_evenly(count: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(count)``, first and last included.

    >>> pick_evenly(10, 3)
    [0, 4, 9]
    """
    if k >= count:
        return list(range(count))
    if k == 1:
        return [0]
    return sorted({round(i * (count - 1) / (k - 1)) for i in range(k)})


def _stem(word: str) -> str:
    """Crude stem so 'volcanoes'/'volcano', 'bees'/'bee', "Mei's"/'Mei' and 'lived'/'live'/'living'
    match: possessive, plural and -ed/-ing endings off, a final 'e' off, 6-letter prefix.

    >>> [_stem(w) for w in ("mei's", "lived", "live", "living", "helped", "volcanoes", "bee")]
    ['mei', 'liv', 'liv', 'liv', 'help', 'volcan', 'bee']
    """
    word = re.sub(r"'s?$", "", word)
    for suffix, repl in (("ies", "y"), ("oes", "o"), ("es", "e"), ("s", "")):
        if len(word) > 4 and word.endswith(suffix) and not word.endswith("ss"):
            word = word[: -len(suffix)] + repl
            break
    for suffix in ("ing", "ed"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word[:6]


def content_stems(text: str) -> set[str]:
    return {_stem(w) for w in filters.content_words(text)}


def grounding(question: str, source: str) -> float:
    """Share of the question's content words (stemmed) that occur in ``source`` (0..1).

    >>> grounding("When did Tambora erupt?", "The eruption of Tambora in 1815 ...")
    0.5
    """
    words = content_stems(question)
    if not words:
        return 0.0
    return len(words & content_stems(source)) / len(words)


def similarity(a: str, b: str) -> float:
    """Jaccard overlap of content stems: the redundancy measure of the diversity term."""
    wa, wb = content_stems(a), content_stems(b)
    if not wa or not wb:
        return float(filters.normalize(a) == filters.normalize(b))
    return len(wa & wb) / len(wa | wb)


def best_sentence(question: str, passage: str, chunk: Chunk) -> tuple[int, int]:
    """The sentence of ``chunk`` that shares most content words with ``question`` (the chunk if none does)."""
    words = content_stems(question)
    best, best_hits = (chunk.start, chunk.end), 0
    for s, e in chunk.sentences:
        hits = len(words & content_stems(passage[s:e]))
        if hits > best_hits:
            best, best_hits = (s, e), hits
    return best
