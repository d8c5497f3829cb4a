"""Question quality filters shared by Chat (curious follow-ups), Question generation and Synth.

Each check returns the reasons a candidate is dropped, so the UI can show why:

>>> question_faults("Why?")
['single word']
>>> question_faults("What did you cook last night?")
[]
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
"""Kana and Han characters: Chinese and Japanese write no spaces between words, so each is a word of its
own here (Korean spaces its words)."""
ABUGIDA = "\u0900-\u0963\u0966-\u0dff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"
"""Indic scripts (Devanagari to Sinhala, less the dandas), Thai, Lao, Myanmar and Khmer: their vowel signs
and viramas are marks, not letters, and belong to the word they are in."""
WORD = re.compile(rf"[{CJK}]|(?:[^\W_{CJK}]|[{ABUGIDA}]|')+")
_CJK_CHAR = re.compile(f"[{CJK}]")
_ACCENTS = re.compile("[\u0300-\u036f]")
"""The accents that NFKD takes off Latin, Greek and Cyrillic letters."""
QUESTION_MARKS = "?？؟"
"""What ends a question: the Latin question mark, the full-width one (Chinese, Japanese) and the Arabic one."""
YES_NO_STARTS = ("is", "are", "was", "were", "do", "does", "did", "can", "could", "will", "would", "should",
                 "have", "has", "had", "am", "shall", "may", "might", "must", "isn't", "aren't", "don't",
                 "doesn't", "didn't", "won't", "wouldn't", "can't", "couldn't", "haven't", "hasn't")
STOPWORDS = frozenset("""a an the and or but if of to in on at by for with about from into over under as is are was
were be been being do does did have has had i you he she it we they me him her us them my your his its our their
this that these those what which who whom whose when where why how there here not no so than then too very can
could will would should shall may might must just also any some all each more most other such only own same""".split())
NEAR_DUPLICATE = 0.7


def normalize(text: str) -> str:
    """Lower-case, accents folded, punctuation dropped, spaces collapsed; letters of every script kept
    (a Han or kana character as a word of its own).

    >>> normalize("Café, naïve!"), normalize("Что такое «мёд»?"), normalize("长城有多长？"), normalize("ما هو العسل؟")
    ('cafe naive', 'что такое мед', '长 城 有 多 长', 'ما هو العسل')
    >>> normalize("तुम्हें क्या चाहिए?"), normalize("Don’t"), normalize("がんばって")
    ('तुम्हें क्या चाहिए', "don't", 'が ん ば っ て')
    """
    text = unicodedata.normalize("NFKD", text.replace("\u2019", "'"))
    text = unicodedata.normalize("NFC", _ACCENTS.sub("", text))  # (kana keep their voicing marks)
    return " ".join(WORD.findall(text.lower()))


def ends_question(text: str) -> bool:
    """Whether ``text`` ends with a question mark of any script (``QUESTION_MARKS``)."""
    return text.rstrip().endswith(tuple(QUESTION_MARKS))


def words(text: str) -> list[str]:
    return normalize(text).split()


CJK_FUNCTION_CHARS = frozenset("的了是在和与也就都而及把被这那你我他她它们吗呢吧啊么什怎谁哪为之其于以一不有个很还要会"
                               "のはがをにでともたてするかなだ")
"""Chinese and Japanese characters that carry no topic of their own (particles, pronouns, question words)."""


def content_words(text: str) -> set[str]:
    """Words that carry meaning (stopwords and 1-letter words dropped; a Han or kana character, a word
    here, is kept unless it is a function character).

    >>> sorted(content_words("长城是什么时候开始修建的？"))
    ['修', '候', '城', '始', '建', '开', '时', '长']
    """
    return {w for w in words(text) if w not in STOPWORDS and (len(w) > 1 or _CJK_CHAR.match(w)
                                                               and w not in CJK_FUNCTION_CHARS)}


def token_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the two texts' word sets (0..1)."""
    wa, wb = set(words(a)), set(words(b))
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def near_duplicate(a: str, b: str, threshold: float = NEAR_DUPLICATE) -> bool:
    """Same text once normalised, or word overlap at or above ``threshold``."""
    return normalize(a) == normalize(b) or token_overlap(a, b) >= threshold


def is_yes_no(question: str) -> bool:
    """A question a bare yes/no answers (starts with an auxiliary verb, offers no 'or' choice)."""
    ws = words(question)
    return bool(ws) and ws[0] in YES_NO_STARTS and " or " not in f" {normalize(question)} "


GENERIC_WORDS = frozenset("""think thinks thinking thought know knows knew known like likes liked love loves loved
want wants wanted feel feels feeling felt tell telling told make makes made making get gets got go goes going went gone
say says said see sees saw seen plan plans planning help helps helped way ways thing things lot lots much many really
mean means meant sound sounds happen happens happened handle far else anything something everything nothing what's
that's it's there's yours mine sure right good great well nice okay ok yes""".split())
"""Words that name nothing a conversation is about: a question made only of these and stopwords fits
any conversation."""


def is_generic(question: str) -> bool:
    """A question that names nothing ("What do you think?", "How did it go?", "What's your plan?"):
    all its content words are generic ones (:data:`GENERIC_WORDS`).

    >>> [is_generic(q) for q in ("What do you think?", "What's your plan?", "How long have you played the cello?")]
    [True, True, False]
    """
    return not (content_words(question) - GENERIC_WORDS)


def is_nonsense(text: str) -> bool:
    """Repeated-token babble: one word making up most of the text, or the same word 3+ times in a row,
    or mostly non-letters."""
    ws = words(text)
    if not ws:
        return True
    letters = sum(c.isalpha() or unicodedata.category(c)[0] == "M" for c in text)  # (a vowel sign is a mark)
    if letters < 0.5 * len(text.replace(" ", "")):
        return True
    ws = _repeat_units(ws)
    if any(ws[i] == ws[i + 1] == ws[i + 2] for i in range(len(ws) - 2)):
        return True
    most = max(ws.count(w) for w in set(ws))
    return len(ws) >= 4 and most / len(ws) > 0.4


def _repeat_units(ws: list[str]) -> list[str]:
    """``ws`` with each run of Han or kana characters as its overlapping pairs, for the repetition checks:
    Chinese doubles characters in ordinary words (妈妈, 看看), so one character repeated is no babble.

    >>> _repeat_units(words("妈妈的妈妈是谁？")), is_nonsense("妈妈的妈妈是谁？"), is_nonsense("哈哈哈哈哈")
    (['妈妈', '妈的', '的妈', '妈妈', '妈是', '是谁'], False, True)
    """
    units: list[str] = []
    run: list[str] = []
    for w in [*ws, ""]:
        if len(w) == 1 and _CJK_CHAR.match(w):
            run.append(w)
            continue
        units.extend([a + b for a, b in zip(run, run[1:])] if len(run) > 1 else run)
        run = []
        if w:
            units.append(w)
    return units


SUBJECT_PRONOUNS = frozenset({"he", "she", "it", "they"})
AUXILIARIES = frozenset({"is", "are", "was", "were", "do", "does", "did", "has", "have", "had", "can", "could", "will",
                         "would", "should", "might", "may", "must"})
WH_WORDS = frozenset({"what", "why", "how", "when", "where", "who", "whom", "which", "whose"})
DUMMY_IT_NEXT = frozenset({"take", "takes", "took", "cost", "costs", "mean", "means", "meant", "possible", "true",
                           "likely", "important", "necessary", "hard", "easy", "rain", "snow"})
"""Words after an "it" that stands for nothing ("How long did it take ...", "Is it possible ..."); an "it"
followed later by "to", "that", "when" or "if" is one too ("What does it mean to build a lighthouse?")."""


DEMONSTRATIVES = frozenset({"this", "that", "these", "those"})
PRONOUN_NEXT = frozenset({
    "mean", "means", "do", "say", "show", "refer", "include", "contain", "describe", "represent", "require", "allow",
    "cause", "affect", "work", "happen", "tell", "indicate", "imply", "suggest", "involve", "look", "used", "called",
    "known", "about", "for", "important", "necessary", "possible", "true", "useful", "significant", "different"})
"""Words after "this" or "that" that make it the subject on its own ("What does this mean?", "What is
this used for?"), where a noun would make it a determiner ("What does this file contain?")."""


def unnamed_subject(question: str) -> str | None:
    """The pronoun a question is about when nothing in it says who or what that is: its subject is
    a bare "he", "she", "it" or "they" ("What kind of organism are they?", "Where did she live?"), or
    a "this" or "that" standing alone ("What does this mean?"). Fine in a conversation, which names
    them earlier; a question asked on its own cannot be answered. "It" that stands for nothing ("How
    long did it take ...?", see DUMMY_IT_NEXT) is not counted, nor a "this" before a noun.

    >>> [unnamed_subject(q) for q in ("What kind of organism are they?", "Where did she live?",
    ...  "Why do bees fan their wings?", "How long did it take to build the tower?", "Are they social?",
    ...  "What does it mean for a bee to waggle?", "What does it tell other bees?")]
    ['they', 'she', None, None, 'they', None, 'it']
    >>> [unnamed_subject(q) for q in ("What does this mean?", "What is this used for?", "Why is that?",
    ...  "What does this file contain?", "Why are these bees dancing?")]
    ['this', 'this', 'that', None, None]
    """
    ws = words(question)
    if not ws:
        return None
    if ws[0] in AUXILIARIES:
        start = 0
    elif ws[0] in WH_WORDS:
        start = next((i for i in range(1, min(len(ws), 6)) if ws[i] in AUXILIARIES), None)
        if start is None:
            return None
    else:
        return None
    pronoun = ws[start + 1] if start + 1 < len(ws) else None
    if pronoun in DEMONSTRATIVES:
        after = ws[start + 2] if start + 2 < len(ws) else None
        return pronoun if after is None or after in PRONOUN_NEXT else None
    if pronoun not in SUBJECT_PRONOUNS:
        return None
    if pronoun == "it" and (ws[start + 2:start + 3] and ws[start + 2] in DUMMY_IT_NEXT
                            or any(w in ("to", "that", "when", "if") for w in ws[start + 2:])):
        return None
    return pronoun


def question_faults(question: str, seen: Iterable[str] = (), open_only: bool = False,
                    max_words: int = 40) -> list[str]:
    """Why a candidate question is dropped; an empty list means it is kept."""
    text = question.strip()
    faults = []
    if not ends_question(text):
        faults.append("not a question")
    n = len(words(text))
    if n <= 1:
        faults.append("single word")
    elif n > max_words:
        faults.append("too long")
    if is_nonsense(text):
        faults.append("repeated-token nonsense")
    if open_only and is_yes_no(text):
        faults.append("yes/no question")
    if any(near_duplicate(text, other) for other in seen):
        faults.append("near-duplicate")
    return faults


LIST_MARKER = re.compile(r"^\s*(?:(?:[-*•]|\d+[.)]|Q\d*[:.)]|Question\s*\d*[:.)])\s*)+", re.IGNORECASE)
LEADING_ACTION = re.compile(r"^\s*(?:(?:\([^()?\n]{1,40}\)|\*[^*?\n]{1,40}\*|\[[^\[\]?\n]{1,40}\])\s*)+")
"""Stage directions before a question ("(laughs) What do you think?", "*smiles* How was it?"): the
bundled model writes them, and a suggestion chip showed one. (None holds a '?': "*What now?*" is an
italic question, kept.)"""


INTRODUCED = re.compile(r"^[^?]*:\s*[\"“‘']?(?=[A-Z])")
"""What introduces a question after a colon ("Here's a follow-up question based on your answer:
\"What kind of ...?\""): the bundled model writes such lines, and a suggestion chip showed one whole,
its opening quote too. The question after it starts with a capital ("Quick question: what ...?" and
"Your pick: tea or coffee?" stay whole), and the introduction is not itself the question's start
("Have you read 'Dune: Part Two'?" stays whole)."""
QUESTION_STARTS = frozenset(YES_NO_STARTS) | {"what", "how", "why", "who", "whom", "whose", "which", "when", "where"}
QUOTE_MARKS = "\"“”‘’"
"""Marks that open or close a quotation and nothing else (an apostrophe also ends "dogs'")."""


def _without_introduction(question: str) -> str:
    """``question`` without what introduces it before a colon (``INTRODUCED``)."""
    if ":" not in question or not ends_question(question):
        return question
    first = words(question[:question.find(":")])[:1]
    if first and first[0].lower() in QUESTION_STARTS:
        return question
    return INTRODUCED.sub("", question)


def _unquoted(question: str) -> str:
    """A question without a quote mark opening it that nothing closes (its closing one came after the '?')."""
    if question[:1] in QUOTE_MARKS + "'" and not any(mark in question[1:] for mark in QUOTE_MARKS):
        return question[1:].lstrip()
    return question


def extract_questions(text: str) -> list[str]:
    """Split generated text into candidate questions: one per line or list item, and every
    sentence ending in '?' inside a longer line, without a stage direction or an introduction
    ending in a colon before it.

    >>> extract_questions("That's funny! (laughs) What do you think? *winks*")
    ['What do you think?']
    >>> extract_questions('Here is a follow-up question based on your answer: "Where do dogs thrive?"')
    ['Where do dogs thrive?']
    """
    found = []
    for line in text.splitlines():
        # a stage direction first ("*smiles*" would lose its first '*' as a list marker), and again
        # before each question below ("1. (grins) Where to?", "Oh! (sighs) Why?")
        line = LIST_MARKER.sub("", LEADING_ACTION.sub("", line)).strip().strip('"').strip()
        if not line:
            continue
        parts = re.findall(rf"[^.!?。！।۔{QUESTION_MARKS}]*[{QUESTION_MARKS}]", line)
        found.extend(p.strip() for p in parts) if parts else found.append(line)
    found = [_unquoted(_without_introduction(q)) for q in found]
    return [q for q in (LEADING_ACTION.sub("", q).strip() for q in found) if q]


def dedupe(candidates: Iterable[str], seen: Iterable[str] = ()) -> list[str]:
    """Candidates in order, dropping near-duplicates of earlier ones and of ``seen``."""
    kept: list[str] = []
    seen = list(seen)
    for c in candidates:
        if not any(near_duplicate(c, other) for other in kept + seen):
            kept.append(c)
    return kept
