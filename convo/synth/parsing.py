"""Parsing generated scripts into turns, and the filters that keep or drop a conversation."""
from __future__ import annotations

import re
from collections.abc import Sequence

from .. import filters


_TERMINAL = tuple('.!?)"\'”’…*')


def _labels(roles: Sequence[str]) -> str:
    return "|".join(re.escape(r) for r in sorted(roles, key=len, reverse=True))


def parse_script(text: str, roles: Sequence[str]) -> tuple[list[dict], list[str]]:
    """Split a generated script (``ROLE: text`` turns) into messages; the first role is the user.

    Text after the script (a blank line then prose, or another speaker) is cut off; an unfinished last
    message and a closing question without an answer are dropped. Returns ``(messages, faults)``.

    >>> parse_script("STUDENT: What is rain?\\nTEACHER: Water falling from clouds.", ("STUDENT", "TEACHER"))[0][1]
    {'role': 'assistant', 'content': 'Water falling from clouds.'}
    """
    label = re.compile(rf"(?:^|(?<=\s))[*_#]*\s*({_labels(roles)})\s*[*_]*\s*:[*_]*", re.IGNORECASE)
    matches = list(label.finditer(text))
    if not matches:
        return [], ["no turns"]
    turns: list[tuple[str, str]] = []
    for match, following in zip(matches, matches[1:] + [None]):
        body = text[match.end(): following.start() if following else len(text)]
        body, ended = _cut_trailing_prose(body)
        speaker = next(r for r in roles if r.lower() == match.group(1).lower())
        turns.append((speaker, _clean_turn(body, roles)))
        if ended:
            break
    messages = _trim_ending([{"role": "user" if speaker == roles[0] else "assistant", "content": content}
                             for speaker, content in turns])
    return messages, _turn_faults(messages, roles, leading_text=bool(text[:matches[0].start()].strip()))


_OTHER_SPEAKER = re.compile(r"\n[ \t]*[*_]*[A-Z][A-Za-z .'-]{0,24}[*_]*\s*:\s")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def _cut_trailing_prose(body: str) -> tuple[str, bool]:
    """Cut a turn where the script ends: at a blank line followed by prose, or at another speaker's label.
    Returns the turn's text and whether the script ended there."""
    cuts = []
    blank = _BLANK_LINE.search(body)
    if blank and body[:blank.start()].strip() and body[blank.end():].strip():
        cuts.append(blank.start())
    other = _OTHER_SPEAKER.search(body)
    if other and body[:other.start()].strip():
        cuts.append(other.start())
    if not cuts:
        return body, False
    return body[:min(cuts)], True


_CLOSING_ACTION = re.compile(r"([.!?…])\s+\*[^*\n]{1,40}\*\s*$")


def _clean_turn(text: str, roles: Sequence[str] = ()) -> str:
    """One line of a turn, without stage directions (``strip_actions``) and without an action after its
    last sentence ("Sure! *winks*" -> "Sure!"): with the action's last asterisk stripped with the other
    markup, the turn looked cut off and was dropped.

    >>> _clean_turn("  Umbrellas, oh my!!  *winks*  ")
    'Umbrellas, oh my!!'
    """
    text = _CLOSING_ACTION.sub(r"\1", strip_actions(" ".join(text.split()), roles))
    return text.strip(" *_\"“”").strip()


# Stage directions the bundled model writes into chat lines: "(smiling proudly)", "(laughs)", "*nods*".
# On the keyword configs of benchmarks/synth_vs_chat_builder.py and the tab's default, 42-51 of 96 kept
# conversations had one (seeds 0-2), most in the assistant's lines: a chat model trained on them learns
# to narrate its own smiles. An aside is one when its first word is such an action, a lowercase word in
# -ing ("(tapping chin thoughtfully)") or a manner adverb ("(warmly)", "(excitedly smiling)"); when it is
# one lowercase word in -ed ("(exhilarated)"), or a few words ending in an expression ("(big smile)").
_ACTION_WORDS = frozenset("""
    laugh laughs laughing chuckle chuckles chuckling giggle giggles giggling smile smiles smiling grin grins
    grinning smirk smirks smirking sigh sighs sighing pause pauses pausing nod nods nodding wink winks winking
    shrug shrugs shrugging gasp gasps gasping beam beams beaming blush blushes blushing wave waves waving
    clap claps clapping whisper whispers whispering mutter mutters muttering point points pointing gesture
    gestures gesturing look looks looking glance glances glancing lean leans leaning exhale exhales exhaling
    inhale inhales inhaling cough coughs coughing sip sips sipping hands handing pat pats patting tap taps
    tapping picks picking pours pouring makes making offers offering thinks thinking ponders pondering
    cries crying sniffs sniffing frowns frowning scratches scratching rolls rolling holds starts gets takes
    gives puts turns walks sits stands opens closes raises lifts shakes reaches grabs wipes adds
    surprised amused excited confused puzzled startled annoyed embarrassed delighted relieved shocked
    stunned sadly dryly shyly coyly""".split())
_NOT_ACTIONS = frozenset("""
    including meaning according excluding depending regarding concerning following assuming considering
    during notwithstanding nothing something anything everything morning evening spring string thing king
    ring sing wing bring being ceiling building clothing wedding pudding usually generally typically normally
    especially actually probably possibly mostly roughly approximately literally really family simply merely
    hardly nearly likely mainly partly surely weekly yearly hourly lately lovely lonely deadly costly barely
    supply""".split())
_EXPRESSIONS = frozenset("smile grin laugh sigh wink nod shrug chuckle giggle gasp frown smirk".split())
_ASIDE = re.compile(r"\(([^()\n]{1,80})\)|(?<!\*)\*([^*\n]{1,60})\*(?!\*)")


def _is_action(aside: str) -> bool:
    words = re.findall(r"[A-Za-z']+", aside)
    if not words or len(words) > 12:
        return False
    first, lowercase = words[0].lower(), words[0][0].islower()
    measured = any(c.isdigit() for c in aside)  # "(setting it to 25 minutes)" is content, "(grinning)" is not
    return (first in _ACTION_WORDS
            or (lowercase and first.endswith("ing") and len(first) >= 5 and first not in _NOT_ACTIONS and not measured)
            or (lowercase and len(words) == 1 and first.endswith("ed"))  # "(exhilarated)"
            or (first.endswith("ly") and len(first) >= 6 and first not in _NOT_ACTIONS  # "(warmly)"
                and all(w.lower().endswith(("ly", "ing")) or w.lower() in _ACTION_WORDS for w in words))
            or (len(words) <= 4 and words[-1].lower() in _EXPRESSIONS))  # "(with a big smile)"


def strip_actions(text: str, roles: Sequence[str] = ()) -> str:
    """``text`` without stage directions, and cut before an aside that names a speaker (``roles``):
    "(TEACHER adds) So..." in the student's line is the model writing the other voice.

    >>> strip_actions("Good idea! (smiling proudly) Eat those, *nods* I (pausing) mean it (laughs).")
    'Good idea! Eat those, I mean it.'
    >>> strip_actions("Music is old. (TEACHER adds) So it is!", ("STUDENT", "TEACHER"))
    'Music is old.'
    >>> strip_actions("Coffee (from the Arabic qahwa) is *really* old (including in India).")
    'Coffee (from the Arabic qahwa) is *really* old (including in India).'
    >>> strip_actions("Work in short bursts (setting a timer for 25 minutes), then rest.")
    'Work in short bursts (setting a timer for 25 minutes), then rest.'
    """
    if roles:
        cue = re.search(rf"\((?:[^()\n]*\W)?(?:{_labels(roles)})s?\b[^()\n]*\)", text, re.IGNORECASE)
        if cue:
            text = text[:cue.start()].rstrip()
    stripped = _ASIDE.sub(lambda m: " " if _is_action(m.group(1) or m.group(2)) else m.group(0), text)
    if stripped == text:
        return text
    stripped = re.sub(r"\s+(?=[,.!?;:…])", "", " ".join(stripped.split())).lstrip(" ,;:")
    return stripped[:1].upper() + stripped[1:] if stripped[:1].islower() and text[:1] != stripped[:1] else stripped


def _trim_ending(messages: list[dict]) -> list[dict]:
    """Drop an unfinished last message (generation hit its token limit) and a trailing unanswered question."""
    if len(messages) > 2 and not messages[-1]["content"].endswith(_TERMINAL):
        messages = messages[:-1]
    if len(messages) > 2 and messages[-1]["role"] == "user":
        messages = messages[:-1]
    return messages


def _turn_faults(messages: list[dict], roles: Sequence[str], leading_text: bool) -> list[str]:
    faults = []
    if leading_text:
        faults.append(f"text before the first {roles[0]} turn")
    if len(messages) < 2:
        faults.append("fewer than 2 turns")
    if messages and messages[0]["role"] != "user":
        faults.append(f"does not start with {roles[0]}")
    if any(a["role"] == b["role"] for a, b in zip(messages, messages[1:])):
        faults.append("turns do not alternate")
    if any(not m["content"] for m in messages):
        faults.append("empty turn")
    return faults


_GREETING = r"(?:hi|hello|hey|thanks|thank you|yes|no|okay|ok|sure|well|good morning|good afternoon|sorry|please)"


def strip_address(text: str, roles: Sequence[str]) -> str:
    """Remove forms of address to a role: "Teacher, what is...?" -> "What is...?", "Thanks, teacher!" -> "Thanks!".

    >>> strip_address("Teacher, what is rain?", ("STUDENT", "TEACHER"))
    'What is rain?'
    """
    names = rf"(?:(?:my|dear)\s+)?(?:{_labels(roles)})"
    original = text
    text = re.sub(rf"^\s*{names}\s*[,:!.]+\s*", "", text, flags=re.IGNORECASE)
    text = re.sub(rf"^(\s*{_GREETING})[\s,]+{names}(?=\s*[,.!?])", r"\1", text, flags=re.IGNORECASE)
    text = re.sub(rf",\s*{names}\s*(?=[,.!?;:]|$)", "", text, flags=re.IGNORECASE)
    text = re.sub(r"^[,\s]+", "", text)
    if text != original and text[:1].islower():
        text = text[0].upper() + text[1:]
    return text.strip() or original.strip()


def mentions(text: str, word: str) -> bool:
    """True if ``word`` starts a word in ``text`` (case-insensitive; plurals count: library -> libraries).

    >>> mentions("Libraries lend books.", "library"), mentions("A riverbank", "river"), mentions("Driver", "river")
    (True, True, False)
    """
    forms = [re.escape(form) for form in word_forms(word)]
    return re.search(rf"(?<!\w)(?:{'|'.join(forms)})", text, re.IGNORECASE) is not None


def word_forms(word: str) -> list[str]:
    """The forms of ``word`` that count as mentioning it: itself, and a plural in -ies for a word in
    consonant + y (``library`` -> ``libraries``)."""
    if len(word) > 2 and word[-1].lower() == "y" and word[-2].lower() not in "aeiou":
        return [word, word[:-1] + "ies"]
    return [word]


def excluded_by(text: str, exclude: Sequence[tuple[str, re.Pattern]]) -> str | None:
    """The first exclude entry ``text`` matches, or None."""
    return next((entry for entry, pattern in exclude if pattern.search(text)), None)


def keyword_faults(messages: Sequence[dict], word: str, exclude: Sequence[tuple[str, re.Pattern]]) -> list[str]:
    """Why a keyword conversation is dropped: it misses its word, matches an exclude entry, or has babble."""
    text = "\n".join(m["content"] for m in messages)
    faults = []
    if not mentions(text, word):
        faults.append(f'does not mention "{word}"')
    entry = excluded_by(text, exclude)
    if entry is not None:
        faults.append(f'matches exclude "{entry}"')
    if any(m["content"] and filters.is_nonsense(m["content"]) for m in messages):
        faults.append("repeated-token nonsense")
    return faults


_AGENT_LABEL = re.compile(r"^\s*[*_]*(?:user|assistant|me|you|ai|bot|human)\s*[*_]*\s*:\s*", re.IGNORECASE)
_NEXT_SPEAKER = re.compile(r"\n\s*[*_]*(?:user|assistant|me|you|ai|bot|human)\s*[*_]*\s*:", re.IGNORECASE)


def clean_reply(text: str) -> str:
    r"""An agent's message without a leading ``User:`` label, a made-up next turn, or an unfinished last sentence.

    >>> clean_reply('User: "I keep giving up." Why do I\nAssistant: Because.')
    'I keep giving up.'
    """
    text = _AGENT_LABEL.sub("", text.strip())
    cut = _NEXT_SPEAKER.search(text)
    if cut:
        text = text[:cut.start()]
    text = _whole_sentences(strip_actions(" ".join(text.split())))
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def _whole_sentences(text: str) -> str:
    """``text`` without a trailing unfinished sentence (a reply cut by its token limit), if a full one precedes it."""
    text = text.strip()
    if text.endswith(_TERMINAL):
        return text
    sentence = re.match(r"^(.*[.!?])[\"'”’)\]]*(?=\s)", text)
    return sentence.group(0).strip() if sentence else text


def persona_faults(messages: Sequence[dict]) -> list[str]:
    """Why a persona conversation is dropped: an empty or babbling message."""
    faults = []
    if any(not m["content"].strip() for m in messages):
        faults.append("empty message")
    elif any(filters.is_nonsense(m["content"]) for m in messages):
        faults.append("repeated-token nonsense")
    return faults


def cut_to(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (0 = no limit): at a sentence end if one is in reach, else at a word.

    >>> cut_to("One two. Three four five", 20), cut_to("one two three", 9)
    ('One two.', 'one two')
    """
    if limit <= 0 or len(text) <= limit:
        return text
    head = text[:limit + 1]
    sentence = re.match(r"^(.*[.!?])(?=\s)", head)
    if sentence and len(sentence.group(1)) <= limit:
        return sentence.group(1)
    return (head.rsplit(None, 1)[0] if " " in head else text[:limit]).rstrip(" ,;:")
