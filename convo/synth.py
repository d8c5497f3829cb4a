"""Synthetic conversations to train small chat models on: persona role-play and keyword scripts.

Batched (all conversations of a batch advance turn by turn together), filtered, resumable (each kept
conversation is appended to the output at once; a rerun skips finished items). Run it with
``python -m convo synth --config keywords.json --out out.jsonl`` or
``python -m convo synth --personas personas.json --seeds seeds.txt --out out.jsonl [--forever]``.

Why one module (for now): configs, jobs, filters, programs and output of one generator; to be split
into convo/synth/.
"""
from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import filters
from .data import MAX_DEPTH, json_depth
from .engine.generation import Program, Stop, check_messages, pipeline, render_prompt

PERSONA, KEYWORD = "persona", "keyword"
MODES = (PERSONA, KEYWORD)
AGENTS, SCRIPT, TURNS = "agents", "script", "turns"
STRATEGIES = (AGENTS, SCRIPT)
"""Persona mode strategies."""
KEYWORD_STRATEGIES = (TURNS, SCRIPT)
"""Keyword mode strategies."""
DEFAULT_ROLES = ("STUDENT", "TEACHER")
PERSONA_SCRIPT_ROLES = ("USER", "ASSISTANT")
SEED_FIELDS = ("seed", "message", "text", "prompt", "content")
PERSONA_FIELDS = ("motivation", "disposition", "seed", "motivation_name", "disposition_name", "turns")
RESTYLE_FIELDS = ("message", "role") + PERSONA_FIELDS
MAX_SEEDS_IN_CARD = 50
SCRIPT_TOKENS = 160
"""Default token budget of a whole script (keyword mode, persona script strategy)."""
MESSAGE_TOKENS = 72
"""Default token budget of one agent message."""
LINE_TOKENS = 40
"""Default token budget of one script line (keyword mode, ``turns`` strategy)."""

DEFAULT_KEYWORD_PROMPT_LINES = [
    'Write a short conversation between a STUDENT and a TEACHER about "{word}".',
    "The STUDENT asks a question about {word} and the TEACHER answers it, using the word {word}.",
    "Write 4 lines, each starting with STUDENT: or TEACHER:.",
]
DEFAULT_EXCLUDE = ["as an ai", "language model", "I'm sorry", "I cannot", "http"]

DEFAULT_AGENT_TEMPLATE = """You are a person chatting with an AI assistant. Stay in character for the whole chat.
Your motivation: {motivation}
Your disposition: {disposition}
You opened the chat with: "{seed}"
Write only your next message to the assistant: one or two short sentences, in the first person."""

DEFAULT_SCRIPT_TEMPLATE = """Write a chat between a USER and an AI ASSISTANT with {turns} exchanges.
The user's motivation: {motivation}
The user's disposition: {disposition}
The user opens with: "{seed}"
Write each message on its own line, starting with USER: or ASSISTANT:."""

DEFAULT_ASSISTANT_PROMPT = (
    "You are a helpful, curious assistant. Answer in two or three sentences, then ask one short question "
    "to learn more about the user."
)

DEFAULT_RESTYLE_TEMPLATE = """Rewrite this chat message as a post in a social-media thread, at most 280 characters. \
Keep its meaning. Write only the post.

{message}"""


class ConfigError(ValueError):
    """A config, seed file, template or grid is invalid; the message names the file and field at fault."""


def _fail(source: str | None, message: str) -> ConfigError:
    return ConfigError(f"{source}: {message}" if source else message)


# --------------------------------------------------------------------------- templates

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def check_template(template: str, allowed: Sequence[str], where: str) -> str:
    """Raise ConfigError if ``template`` uses a ``{name}`` outside ``allowed`` (a typo would stay in the prompt).

    >>> check_template("Be {disposition}", PERSONA_FIELDS, "template")
    'Be {disposition}'
    """
    if re.search(r"(?<!\{)\{\}(?!\})|\{\d+\}", template):
        # str.format-style positional slots: nothing says which is the persona and which the seed
        names = ", ".join("{" + name + "}" for name in allowed[:3])
        raise ConfigError(f"{where}: positional placeholders {{}} or {{0}} cannot be filled (nothing says which "
                          f"is which): write named ones instead, e.g. {names}")
    unknown = sorted(set(_PLACEHOLDER.findall(template)) - set(allowed))
    if unknown:
        names = ", ".join("{" + name + "}" for name in allowed)
        raise ConfigError(f"{where}: unknown placeholder {{{unknown[0]}}} (use {names})")
    return template


def fill_template(template: str, values: Mapping[str, Any]) -> str:
    """Replace each known ``{name}``; other braces stay as written (templates may contain JSON).

    >>> fill_template("About {word} {x}", {"word": "rain"})
    'About rain {x}'
    """
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


# --------------------------------------------------------------------------- keyword config


def compile_exclude(entries: Sequence[str]) -> list[tuple[str, re.Pattern]]:
    """Each exclude entry as a case-insensitive pattern: a regex fragment, or a plain substring if it is
    not valid regex (``"C++"``)."""
    compiled = []
    for entry in entries:
        try:
            pattern = re.compile(entry, re.IGNORECASE)
        except re.error:
            pattern = re.compile(re.escape(entry), re.IGNORECASE)
        compiled.append((entry, pattern))
    return compiled


@dataclass
class KeywordConfig:
    """A keyword generation config, as llama.cpp word-conversation scripts used them.

    >>> KeywordConfig("demo", ["Talk about {word}."], ["rain"]).prompt("rain")
    'Talk about rain.'
    """

    name: str
    """A name for the set (used in the dataset card)."""
    prompt_lines: list[str]
    """Lines of the instruction; ``{word}`` is replaced by each word."""
    words: list[str]
    """One conversation (or ``n_per_word``) per word; a kept conversation mentions its word."""
    exclude: list[str] = field(default_factory=list)
    """Case-insensitive substrings / regex fragments; a conversation matching one is dropped."""
    model: str | None = None
    """The model the config was written for (the CLI uses it unless ``--model`` is given)."""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError('"name": expected a non-empty string')
        _check_strings(self.prompt_lines, "prompt_lines", allow_blank=True)
        if not self.prompt_lines:
            raise ConfigError('"prompt_lines": expected at least one line')
        if not any("{word}" in line for line in self.prompt_lines):
            raise ConfigError('"prompt_lines": no line contains "{word}"')
        _check_strings(self.words, "words")
        if not self.words:
            raise ConfigError('"words": expected at least one word')
        self.words = [w.strip() for w in self.words]
        seen: dict[str, int] = {}
        for i, word in enumerate(self.words):
            if word.lower() in seen:
                raise ConfigError(f'words[{i}]: "{word}" repeats words[{seen[word.lower()]}]')
            seen[word.lower()] = i
        _check_strings(self.exclude, "exclude")
        self.exclude = [e.strip() for e in self.exclude]
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise ConfigError('"model": expected a non-empty string')

    def prompt(self, word: str) -> str:
        """The instruction for one word."""
        return "\n".join(self.prompt_lines).replace("{word}", word)

    def to_dict(self) -> dict:
        data = {"name": self.name, "prompt_lines": list(self.prompt_lines), "words": list(self.words),
                "exclude": list(self.exclude)}
        if self.model:
            data["model"] = self.model
        return data


def _check_strings(values: Any, name: str, allow_blank: bool = False) -> None:
    if not isinstance(values, list):
        raise ConfigError(f'"{name}": expected a list of strings')
    for i, value in enumerate(values):
        if not isinstance(value, str) or (not allow_blank and not value.strip()):
            raise ConfigError(f"{name}[{i}]: expected a non-empty string")


def keyword_config_from_dict(data: Any, source: str | None = None) -> KeywordConfig:
    """Validate a parsed keyword config; errors read ``keywords.json: missing "prompt_lines"``."""
    if not isinstance(data, dict):
        raise _fail(source, "expected a JSON object with name, prompt_lines, words, exclude")
    for key in ("name", "prompt_lines", "words"):
        if key not in data:
            raise _fail(source, f'missing "{key}"')
    try:
        return KeywordConfig(name=data["name"], prompt_lines=data["prompt_lines"], words=data["words"],
                             exclude=data.get("exclude") if data.get("exclude") is not None else [],
                             model=data.get("model"))
    except ConfigError as exc:
        raise _fail(source, str(exc)) from None


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path.name}: file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path.name}: not UTF-8 text") from None
    return _loads_checked(text, path.name)


def _loads_checked(text: str, where: str) -> Any:
    """``json.loads`` for uploaded files: too deep, invalid or unreadable JSON is one ConfigError
    (never a RecursionError or a bare ValueError), the depth found by a linear scan first."""
    if json_depth(text) > MAX_DEPTH:
        raise ConfigError(f"{where}: JSON is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: invalid JSON (line {exc.lineno}: {exc.msg})") from None
    except (RecursionError, ValueError) as exc:
        raise ConfigError(f"{where}: JSON cannot be read ({str(exc)[:80]})") from None


def load_keyword_config(path: str | Path) -> KeywordConfig:
    """Read a keyword config JSON file. Raises ConfigError naming the file and field."""
    path = Path(path)
    return keyword_config_from_dict(_read_json(path), source=path.name)


# --------------------------------------------------------------------------- personas


@dataclass(frozen=True)
class Persona:
    """One simulated user: a motivation crossed with a disposition, each with a description."""

    motivation: str
    disposition: str
    motivation_text: str = ""
    disposition_text: str = ""

    def __post_init__(self):
        for name in ("motivation", "disposition"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f'persona: missing "{name}"')
            object.__setattr__(self, name, value.strip())

    @property
    def label(self) -> str:
        return f"{self.motivation} / {self.disposition}"

    def values(self) -> dict:
        """Template values: descriptions (names when a description is empty) and names."""
        return {"motivation": self.motivation_text.strip() or self.motivation,
                "disposition": self.disposition_text.strip() or self.disposition,
                "motivation_name": self.motivation, "disposition_name": self.disposition}

    def to_dict(self) -> dict:
        return {"motivation": self.motivation, "disposition": self.disposition,
                "motivation_text": self.motivation_text, "disposition_text": self.disposition_text}


@dataclass
class PersonaConfig:
    """A persona experiment config: the persona grid plus optional model and templates."""

    personas: list[Persona]
    llm: str | None = None
    template: str | None = None
    restyle_template: str | None = None


def grid(motivations: Sequence[tuple[str, str]], dispositions: Sequence[tuple[str, str]]) -> list[Persona]:
    """Every motivation crossed with every disposition, from ``(name, description)`` pairs.

    >>> [p.label for p in grid([("learn", ""), ("vent", "")], [("shy", "")])]
    ['learn / shy', 'vent / shy']
    """
    return [Persona(m, d, mt, dt) for m, mt in motivations for d, dt in dispositions]


def _description(entry: dict, where: str, base: Path, files: Mapping[str, Path] | None, source: str) -> str:
    """The description of a profile or disposition: inline ``text`` or the file at ``path``."""
    if isinstance(entry.get("text"), str):
        return entry["text"].strip()
    if "text" in entry:
        raise _fail(source, f'{where}.text: expected a string')
    if "path" not in entry:
        raise _fail(source, f'{where}: missing "path" or "text"')
    rel = entry["path"]
    if not isinstance(rel, str) or not rel.strip():
        raise _fail(source, f"{where}.path: expected a file name")
    if files is not None:
        # Uploaded configs may only name files uploaded with them: never read the server's disk.
        found = files.get(Path(rel).name)
        if found is None:
            raise _fail(source, f"{where}.path: {rel} was not uploaded with the config")
        target = Path(found)
    else:
        target = (base / rel) if not Path(rel).is_absolute() else Path(rel)
    try:
        return target.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise _fail(source, f"{where}.path: file not found: {rel}") from None
    except (UnicodeDecodeError, IsADirectoryError):
        raise _fail(source, f"{where}.path: not a UTF-8 text file: {rel}") from None


def persona_config_from_dict(data: Any, base_dir: str | Path = ".", source: str | None = None,
                             files: Mapping[str, Path] | None = None) -> PersonaConfig:
    """Validate a parsed persona experiment config. ``path`` entries are read relative to ``base_dir``
    (or, with ``files``, only from those uploaded files, by name).

    Errors name the record: ``personas.json: user_profiles[1].dispositions[0]: missing "name"``.
    """
    if not isinstance(data, dict):
        raise _fail(source, 'expected a JSON object with "user_profiles"')
    if "user_profiles" not in data:
        raise _fail(source, 'missing "user_profiles"')
    profiles = data["user_profiles"]
    if not isinstance(profiles, list) or not profiles:
        raise _fail(source, '"user_profiles": expected a non-empty list')
    base = Path(base_dir)
    if files is not None:
        _check_uploaded(data, files, source)
    personas: list[Persona] = []
    for i, profile in enumerate(profiles):
        where = f"user_profiles[{i}]"
        if not isinstance(profile, dict):
            raise _fail(source, f"{where}: expected an object")
        motivation = _required_name(profile, "motivation", where, source)
        motivation_text = _description(profile, where, base, files, source)
        dispositions = profile.get("dispositions")
        if "dispositions" not in profile:
            raise _fail(source, f'{where}: missing "dispositions"')
        if not isinstance(dispositions, list) or not dispositions:
            raise _fail(source, f'{where}.dispositions: expected a non-empty list')
        for j, disposition in enumerate(dispositions):
            dwhere = f"{where}.dispositions[{j}]"
            if not isinstance(disposition, dict):
                raise _fail(source, f"{dwhere}: expected an object")
            name = _required_name(disposition, "name", dwhere, source)
            text = _description(disposition, dwhere, base, files, source)
            personas.append(Persona(motivation, name, motivation_text, text))
    _check_unique_personas(personas, source)
    llm = data.get("llm")
    if llm is not None and (not isinstance(llm, str) or not llm.strip()):
        raise _fail(source, '"llm": expected a model name')
    template = _optional_template(data, "template", base, files, source, PERSONA_FIELDS)
    restyle = _optional_template(data, "restyle_template", base, files, source, RESTYLE_FIELDS)
    return PersonaConfig(personas, llm.strip() if llm else None, template, restyle)


def described_files(data: dict) -> list[str]:
    """Every file a persona config names (``path`` of profiles and dispositions, ``*_template_path``)."""
    names = [data.get(key) for key in ("template_path", "restyle_template_path")]
    for profile in data.get("user_profiles") or []:
        if isinstance(profile, dict):
            names.append(profile.get("path") if "text" not in profile else None)
            for disposition in profile.get("dispositions") or []:
                if isinstance(disposition, dict) and "text" not in disposition:
                    names.append(disposition.get("path"))
    return [n for n in names if isinstance(n, str) and n.strip()]


def _check_uploaded(data: dict, files: Mapping[str, Path], source: str | None) -> None:
    """All the description files a config names that were not uploaded, in one message."""
    missing = list(dict.fromkeys(n for n in described_files(data) if Path(n).name not in files))
    if missing:
        raise _fail(source, f"{len(missing)} file{'s' * (len(missing) != 1)} it names {'were' if len(missing) != 1 else 'was'} "
                            f"not uploaded with it: {', '.join(missing)}. Upload them together with the config "
                            "(select them all, or one .zip).")


def _required_name(entry: dict, key: str, where: str, source: str | None) -> str:
    if key not in entry:
        raise _fail(source, f'{where}: missing "{key}"')
    if not isinstance(entry[key], str) or not entry[key].strip():
        raise _fail(source, f"{where}.{key}: expected a non-empty string")
    return entry[key].strip()


def _optional_template(data: dict, key: str, base: Path, files, source, allowed) -> str | None:
    """``"template": "..."`` inline, or ``"template_path": "file.txt"`` next to the config."""
    if isinstance(data.get(key), str):
        return check_template(data[key], allowed, f"{source}: {key}" if source else key)
    if key in data and data[key] is not None:
        raise _fail(source, f'"{key}": expected a string')
    if data.get(f"{key}_path") is None:
        return None
    text = _description({"path": data[f"{key}_path"]}, f"{key}_path", base, files, source)
    return check_template(text, allowed, f"{source}: {key}_path" if source else key)


def _check_unique_personas(personas: Sequence[Persona], source: str | None) -> None:
    seen = set()
    for persona in personas:
        if persona.label in seen:
            raise _fail(source, f'persona "{persona.label}" appears twice')
        seen.add(persona.label)


def load_persona_config(path: str | Path, files: Mapping[str, Path] | None = None) -> PersonaConfig:
    """Read a persona experiment config; descriptions come inline or from files next to it."""
    path = Path(path)
    return persona_config_from_dict(_read_json(path), base_dir=path.parent, source=path.name, files=files)


PERSONA_COLUMNS = ["motivation", "motivation description", "disposition", "disposition description"]


def persona_rows(personas: Sequence[Persona]) -> list[list[str]]:
    """Personas as table rows (the tab's editable grid)."""
    return [[p.motivation, p.motivation_text, p.disposition, p.disposition_text] for p in personas]


def personas_from_rows(rows: Iterable[Sequence[Any]]) -> list[Persona]:
    """Table rows back to personas; blank rows are skipped, a half-filled row is an error naming it."""
    personas = []
    for number, row in enumerate(rows, start=1):
        cells = [("" if cell is None else str(cell)).strip() for cell in list(row) + [""] * 4][:4]
        if not any(cells):
            continue
        for index, name in ((0, "motivation"), (2, "disposition")):
            if not cells[index]:
                raise ConfigError(f'personas row {number}: missing "{name}"')
        personas.append(Persona(cells[0], cells[2], cells[1], cells[3]))
    if not personas:
        raise ConfigError("personas: add at least one motivation and disposition")
    _check_unique_personas(personas, "personas")
    return personas


def persona_config_to_dict(personas: Sequence[Persona], *, llm: str | None = None, template: str | None = None,
                           restyle_template: str | None = None) -> dict:
    """The persona experiment config for a grid (descriptions inline), e.g. to replay a run from the CLI."""
    profiles: dict[str, dict] = {}
    for p in personas:
        profile = profiles.setdefault(p.motivation, {"motivation": p.motivation, "text": p.motivation_text,
                                                     "dispositions": []})
        profile["dispositions"].append({"name": p.disposition, "text": p.disposition_text})
    data: dict[str, Any] = {"llm": llm or "bundled", "user_profiles": list(profiles.values())}
    if template:
        data["template"] = template
    if restyle_template:
        data["restyle_template"] = restyle_template
    return data


# --------------------------------------------------------------------------- seeds


def parse_seed_text(text: str) -> list[str]:
    """Typed seed messages: one per line, blank lines skipped."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def read_seeds(path: str | Path) -> list[str]:
    """Seed messages from ``.txt`` (one per line), ``.csv`` (a seed/message/text/prompt column, else the
    first column), ``.jsonl`` (strings or objects with one of those fields) or ``.json`` (a list of them)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path.name}: file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path.name}: not UTF-8 text") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        seeds = _csv_seeds(text)
    elif suffix == ".jsonl":
        seeds = [_seed_value(_json_line(line, path.name, n), f"{path.name} line {n}")
                 for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    elif suffix == ".json":
        data = _read_json(path)
        if not isinstance(data, list):
            raise ConfigError(f"{path.name}: expected a list of seed messages")
        seeds = [_seed_value(value, f"{path.name}[{i}]") for i, value in enumerate(data)]
    else:
        seeds = parse_seed_text(text)
    seeds = [s.strip() for s in seeds if s and s.strip()]
    if not seeds:
        raise ConfigError(f"{path.name}: no seed messages")
    return seeds


def _csv_seeds(text: str) -> list[str]:
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    column = next((header.index(name) for name in SEED_FIELDS if name in header), None)
    body = rows[1:] if column is not None else rows
    return [row[column or 0] for row in body if len(row) > (column or 0)]


def _json_line(line: str, name: str, number: int) -> Any:
    try:
        return _loads_checked(line, f"{name} line {number}")
    except ConfigError:
        raise ConfigError(f"{name} line {number}: invalid JSON") from None


def _seed_value(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in SEED_FIELDS:
            if isinstance(value.get(key), str):
                return value[key]
        raise ConfigError(f'{where}: missing "seed" (or "message", "text", "prompt", "content")')
    raise ConfigError(f"{where}: expected a string or an object with a seed")


# --------------------------------------------------------------------------- jobs and items


@dataclass(frozen=True)
class Item:
    """One conversation to make: a (seed, persona) or a word, and a sample index. ``key`` is stable across runs."""

    key: str
    index: int
    word: str | None = None
    seed: str | None = None
    persona: Persona | None = None


def item_key(mode: str, source: str, persona: str | None, index: int) -> str:
    """A short stable id for (seed or word, persona, sample index): what resume checks against.

    >>> item_key("keyword", "rain", None, 0) == item_key("keyword", "rain", None, 0)
    True
    """
    raw = json.dumps([mode, source, persona or "", index], ensure_ascii=False)
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()[:16]


@dataclass
class KeywordJob:
    """Keyword mode: one script per word (and sample) from the config's prompt, between two roles."""

    config: KeywordConfig
    roles: tuple[str, str] = DEFAULT_ROLES
    """Speaker labels: the first is written as the user, the second as the assistant."""
    n_per_word: int = 1
    """Conversations to keep per word."""
    max_attempts: int = 4
    """Generations per item before giving up on it (only while sampling; greedy output never changes)."""
    strip_address: bool = True
    """Remove forms of address such as "Teacher, ..." from the messages."""
    strategy: str = TURNS
    """``turns``: the script is written one line per batched step (reliable with small models);
    ``script``: one generation per conversation, parsed into turns (as the earlier llama.cpp scripts)."""
    turns: int = 2
    """Exchanges per conversation with the ``turns`` strategy (the ``script`` one keeps what the model wrote)."""

    mode = KEYWORD

    def __post_init__(self):
        roles = tuple(r.strip() if isinstance(r, str) else "" for r in self.roles)
        if len(roles) != 2 or not all(roles):
            raise ConfigError("roles: give two speaker names, e.g. STUDENT and TEACHER")
        if roles[0].lower() == roles[1].lower():
            raise ConfigError("roles: the two speakers need different names")
        if any(not re.fullmatch(r"[\w][\w .'-]*", r) for r in roles):
            raise ConfigError("roles: use letters, digits, spaces, dots, apostrophes or hyphens only")
        self.roles = roles
        if self.strategy not in KEYWORD_STRATEGIES:
            raise ConfigError(f"strategy: expected one of {', '.join(KEYWORD_STRATEGIES)}, got {self.strategy!r}")
        _check_range("turns", self.turns, 1, 20)
        _check_range("n_per_word", self.n_per_word, 1, 10_000)
        _check_range("max_attempts", self.max_attempts, 1, 100)

    def items(self, forever: bool = False) -> Iterator[Item]:
        """Sample 0 of every word, then sample 1... (so a batch mixes words); endless with ``forever``."""
        indices = itertools.count() if forever else range(self.n_per_word)
        for index in indices:
            for word in self.config.words:
                yield Item(item_key(KEYWORD, word, None, index), index, word=word)

    def to_config(self) -> dict:
        return {"mode": KEYWORD, **self.config.to_dict(), "roles": list(self.roles), "n_per_word": self.n_per_word,
                "max_attempts": self.max_attempts, "strip_address": self.strip_address, "strategy": self.strategy,
                "turns": self.turns if self.strategy == TURNS else None}

    def settings_meta(self) -> dict:
        return {"mode": KEYWORD, "strategy": self.strategy, "roles": list(self.roles), "config": self.config.name}


@dataclass
class PersonaJob:
    """Persona mode: each seed message role-played by each persona of the grid."""

    seeds: list[str]
    personas: list[Persona]
    turns: int = 3
    """User-assistant exchanges per conversation (a conversation has ``2 * turns`` messages)."""
    strategy: str = AGENTS
    """``agents``: two role-played agents take turns; ``script``: one generation parsed into turns."""
    template: str = ""
    """The user agent's system prompt (agents) or the script instruction (script); empty = the default."""
    assistant_prompt: str = DEFAULT_ASSISTANT_PROMPT
    """The assistant agent's system prompt (agents strategy)."""
    restyle_template: str = ""
    """If set, every message is rewritten with this template (``{message}``), e.g. as a social-media post."""
    restyle_max_chars: int = 280
    """Restyled messages are cut to this many characters, at a sentence end or word boundary (0 = no limit)."""
    samples: int = 1
    """Conversations per (seed, persona)."""
    max_attempts: int = 2
    """Generations per item before giving up on it (only while sampling)."""

    mode = PERSONA

    def __post_init__(self):
        if not self.seeds or not all(isinstance(s, str) and s.strip() for s in self.seeds):
            raise ConfigError("seeds: give at least one seed message")
        self.seeds = list(dict.fromkeys(s.strip() for s in self.seeds))
        if not self.personas:
            raise ConfigError("personas: add at least one motivation and disposition")
        _check_unique_personas(self.personas, "personas")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        _check_range("turns", self.turns, 1, 20)
        _check_range("samples", self.samples, 1, 10_000)
        _check_range("max_attempts", self.max_attempts, 1, 100)
        _check_range("restyle_max_chars", self.restyle_max_chars, 0, 100_000)
        self.template = check_template((self.template or "").strip() or default_template(self.strategy),
                                       PERSONA_FIELDS, "template")
        self.assistant_prompt = (self.assistant_prompt or "").strip()
        self.restyle_template = check_template((self.restyle_template or "").strip(), RESTYLE_FIELDS,
                                               "restyle template")
        if self.restyle_template and "{message}" not in self.restyle_template:
            raise ConfigError("restyle template: it must contain {message}")

    def items(self, forever: bool = False) -> Iterator[Item]:
        indices = itertools.count() if forever else range(self.samples)
        for index in indices:
            for seed in self.seeds:
                for persona in self.personas:
                    yield Item(item_key(PERSONA, seed, persona.label, index), index, seed=seed, persona=persona)

    def values(self, item: Item) -> dict:
        return {**item.persona.values(), "seed": item.seed, "turns": self.turns}

    def to_config(self) -> dict:
        return {"mode": PERSONA, "strategy": self.strategy, "turns": self.turns, "template": self.template,
                "assistant_prompt": self.assistant_prompt if self.strategy == AGENTS else None,
                "restyle_template": self.restyle_template or None, "restyle_max_chars": self.restyle_max_chars,
                "samples": self.samples, "max_attempts": self.max_attempts,
                "personas": [p.to_dict() for p in self.personas],
                "seeds": self.seeds[:MAX_SEEDS_IN_CARD], "seed_count": len(self.seeds)}

    def settings_meta(self) -> dict:
        return {"mode": PERSONA, "strategy": self.strategy, "turns": self.turns,
                "restyled": bool(self.restyle_template)}


Job = KeywordJob | PersonaJob


def default_template(strategy: str) -> str:
    """The generation template a new persona job starts from."""
    return DEFAULT_SCRIPT_TEMPLATE if strategy == SCRIPT else DEFAULT_AGENT_TEMPLATE


def _check_range(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name}: expected a whole number from {low} to {high}, got {value!r}")


@dataclass(frozen=True)
class SynthSampling:
    """How a synthetic run samples and batches: the tab's "Generation settings" and the CLI's flags."""

    temperature: float = 0.7
    """Softmax temperature; 0 means greedy."""
    max_new_tokens: int | None = None
    """Tokens per script, message or line; None picks by strategy (script 160, agents 72, turns 40)."""
    batch_size: int = 8
    """Conversations generated together."""
    seed: int | None = None
    """Random seed for reproducible sampling (None: random)."""


def default_sampling(job: Job, max_new_tokens: int | None = None, temperature: float = SynthSampling.temperature,
                     seed: int | None = None):
    """Sampling that suits the job: a whole script needs more tokens than one message or line."""
    from .settings import Sampling

    budgets = {SCRIPT: SCRIPT_TOKENS, AGENTS: MESSAGE_TOKENS, TURNS: LINE_TOKENS}
    tokens = max_new_tokens or budgets[job.strategy]
    return Sampling(temperature=temperature, top_p=0.95, top_k=50, max_new_tokens=tokens, repetition_penalty=1.15,
                    seed=seed)


# --------------------------------------------------------------------------- parsing and filters

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
        turns.append((speaker, _clean_turn(body)))
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


def _clean_turn(text: str) -> str:
    text = " ".join(text.split())
    return text.strip(" *_\"“”").strip()


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
    forms = [re.escape(word)]
    if len(word) > 2 and word[-1].lower() == "y" and word[-2].lower() not in "aeiou":
        forms.append(re.escape(word[:-1]) + "ies")
    return re.search(rf"(?<!\w)(?:{'|'.join(forms)})", text, re.IGNORECASE) is not None


def keyword_faults(messages: Sequence[dict], word: str, exclude: Sequence[tuple[str, re.Pattern]]) -> list[str]:
    """Why a keyword conversation is dropped: it misses its word, matches an exclude entry, or has babble."""
    text = "\n".join(m["content"] for m in messages)
    faults = []
    if not mentions(text, word):
        faults.append(f'does not mention "{word}"')
    for entry, pattern in exclude:
        if pattern.search(text):
            faults.append(f'matches exclude "{entry}"')
            break
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
    text = _whole_sentences(" ".join(text.split()))
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


# --------------------------------------------------------------------------- generation


@dataclass
class Result:
    """One generated conversation, kept or not."""

    item: Item
    messages: list[dict]
    faults: list[str] = field(default_factory=list)
    raw: str = ""
    """The model's text for script strategies (to see why a conversation was dropped)."""
    restyled: list[dict] | None = None
    attempt: int = 0

    @property
    def kept(self) -> bool:
        return not self.faults


def generate_items(lm, job: Job, items: Sequence[Item], sampling, batch_size: int = SynthSampling.batch_size) -> list[Result]:
    """One attempt at each item, ``batch_size`` conversations at a time; results in item order."""
    results: list[Result | None] = [None] * len(items)
    pending = iter(enumerate(items))
    make = program_for(lm, job)

    def source():
        index, item = next(pending, (None, None))
        return None if item is None else (index, make(item))

    for finished in pipeline(lm, source, sampling, batch_size):
        results[finished.key] = finished.value
    return results


def program_for(lm, job: Job) -> Callable[[Item], Program]:
    """How one conversation of ``job`` is made, as a ``generation.pipeline`` program: it yields the
    prompts of each step and gets their replies, so many conversations share decode steps, each
    taking its next turn as soon as its last reply is in."""
    if isinstance(job, KeywordJob):
        exclude = compile_exclude(job.config.exclude)
        write = _keyword_script if job.strategy == SCRIPT else _keyword_turns
        return lambda item: write(lm, job, item, exclude)
    write = _persona_script if job.strategy == SCRIPT else _persona_agents
    return lambda item: _with_restyle(lm, job, write(lm, job, item))


def _script_prompt(lm, instruction: str, prefill: str) -> str:
    """A chat prompt whose answer is pre-started with the script's first label, so even a small model
    writes the ``ROLE: text`` format instead of prose about it."""
    return render_prompt(lm, [{"role": "user", "content": instruction}]) + prefill


def judge_keyword_script(script: str, word: str, job: KeywordJob,
                         exclude: Sequence[tuple[str, re.Pattern]] | None = None) -> tuple[list[dict], list[str]]:
    r"""Parse a keyword script, strip forms of address, and list why it would be dropped (empty: kept).

    >>> job = KeywordJob(KeywordConfig("d", ["{word}"], ["rain"]))
    >>> judge_keyword_script("STUDENT: Teacher, why does rain fall?\nTEACHER: Clouds get heavy.", "rain", job)
    ([{'role': 'user', 'content': 'Why does rain fall?'}, {'role': 'assistant', 'content': 'Clouds get heavy.'}], [])
    """
    messages, faults = parse_script(script, job.roles)
    if job.strip_address:
        messages = [{**m, "content": strip_address(m["content"], job.roles)} for m in messages]
    if not faults:
        faults = keyword_faults(messages, word, compile_exclude(job.config.exclude) if exclude is None else exclude)
    return messages, faults


def _keyword_script(lm, job: KeywordJob, item: Item, exclude) -> Program:
    """The earlier scripts' way: one generation per conversation, parsed into turns."""
    prefill = f"{job.roles[0]}:"
    [output] = yield [_script_prompt(lm, job.config.prompt(item.word), prefill)]
    raw = f"{prefill} {output}"
    return Result(item, *judge_keyword_script(raw, item.word, job, exclude), raw=raw)


def _keyword_turns(lm, job: KeywordJob, item: Item, exclude) -> Program:
    """The script written one line per step: each step pre-starts the next speaker's label and keeps the
    model's first line, so even a 135M model keeps the format and the turns alternate."""
    base = render_prompt(lm, [{"role": "user", "content": job.config.prompt(item.word)}])
    script = ""
    for step in range(2 * job.turns):
        speaker = job.roles[step % 2]
        [output] = yield [base + script + f"{speaker}:"]
        script += f"{speaker}: {first_line(output, job.roles)}\n"
    return Result(item, *judge_keyword_script(script, item.word, job, exclude), raw=script)


def first_line(text: str, roles: Sequence[str]) -> str:
    r"""The first line of a generated turn, cut before any speaker label and back to its last full sentence.

    >>> first_line("Rain falls. It is wet and\nSTUDENT: more", ("STUDENT", "TEACHER"))
    'Rain falls.'
    """
    text = text.strip()
    label = re.search(rf"\n|(?:^|\s)[*_]*(?:{_labels(roles)})[*_]*\s*:", text, re.IGNORECASE)
    if label:
        text = text[:label.start()]
    return _whole_sentences(text)


def _persona_script(lm, job: PersonaJob, item: Item) -> Program:
    user, assistant = PERSONA_SCRIPT_ROLES
    prefill = f"{user}: {item.seed}\n{assistant}:"
    [output] = yield [_script_prompt(lm, fill_template(job.template, job.values(item)), prefill)]
    raw = f"{prefill} {output}"
    messages, faults = parse_script(raw, PERSONA_SCRIPT_ROLES)
    messages = messages[:2 * job.turns]
    return Result(item, messages, faults or persona_faults(messages), raw)


def _persona_agents(lm, job: PersonaJob, item: Item) -> Program:
    """Two role-played agents take turns.

    The user agent sees its persona as system prompt and the chat with roles swapped (its own messages
    as "assistant"), so it speaks as itself, in character, at every turn.
    """
    conversation = [{"role": "user", "content": item.seed}]
    persona = [{"role": "system", "content": fill_template(job.template, job.values(item))}]
    assistant_system = [{"role": "system", "content": job.assistant_prompt}] if job.assistant_prompt else []
    for turn in range(job.turns):
        if turn > 0:
            [reply] = yield [render_prompt(lm, check_messages(persona + _swap_roles(conversation)))]
            conversation.append({"role": "user", "content": clean_reply(reply)})
        [reply] = yield [render_prompt(lm, check_messages(assistant_system + conversation))]
        conversation.append({"role": "assistant", "content": clean_reply(reply)})
    return Result(item, conversation, persona_faults(conversation))


def _swap_roles(conversation: list[dict]) -> list[dict]:
    swap = {"user": "assistant", "assistant": "user"}
    return [{"role": swap[m["role"]], "content": m["content"]} for m in conversation]


def _with_restyle(lm, job: PersonaJob, write: Program) -> Program:
    """``write``, then (with a restyle template, for a kept conversation) every message rewritten by it."""
    result = yield from write
    if job.restyle_template and result.kept and result.messages:
        replies = yield [render_prompt(lm, [{"role": "user", "content": fill_template(job.restyle_template, {
            **job.values(result.item), "message": m["content"], "role": m["role"]})}]) for m in result.messages]
        result.restyled = [{"role": m["role"], "content": cut_to(clean_reply(text), job.restyle_max_chars)}
                           for m, text in zip(result.messages, replies)]
    return result


# --------------------------------------------------------------------------- output files


def repair_tail(path: str | Path) -> int:
    """Cut a partial last line (a run killed mid-write) off ``path``; return the bytes removed."""
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        # Walk back to the last newline in blocks (lines can be long).
        end = size
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            cut = fh.read(end - start).rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        else:
            keep = 0
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return size - keep


def read_records(path: str | Path) -> list[dict]:
    """The whole lines of a chat JSONL output (a partial trailing line is ignored). Raises ConfigError
    naming a bad line in the middle: that file was not written by convo and is not appended to."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete = lines[:-1]  # after the last newline there is nothing, or a partial line
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError(f"{path.name} line {number}: not a JSON line; choose a new output file") from None
        if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
            raise ConfigError(f'{path.name} line {number}: no "messages"; choose a new output file')
        records.append(record)
    return records


def done_keys(path: str | Path) -> set[str]:
    """Item keys already in an output file (what a rerun skips)."""
    return {r["meta"]["key"] for r in read_records(path) if isinstance(r.get("meta"), dict) and r["meta"].get("key")}


def make_record(result: Result, job: Job, model: str, sampling) -> dict:
    """The chat JSONL line for a kept conversation."""
    item = result.item
    meta: dict[str, Any] = {"key": item.key, "sample": item.index}
    if item.word is not None:
        meta["word"] = item.word
    else:
        meta["seed"] = item.seed
        meta["persona"] = {"motivation": item.persona.motivation, "disposition": item.persona.disposition}
    meta.update(model=model, settings={**job.settings_meta(), "sampling": sampling.to_dict()},
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"), attempt=result.attempt + 1)
    if result.restyled is not None:
        meta["restyled"] = result.restyled
    return {"messages": result.messages, "meta": meta}


class Interrupted(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM during a CLI run (never while a line is being written)."""


class _WriteGuard(threading.local):
    """Marks the thread writing a line; the CLI's signal handler (which Python runs in the main thread)
    defers its interrupt until the line is written and counted, so a stop never leaves half a line."""

    depth = 0
    pending = False

    def __enter__(self):
        self.depth += 1

    def __exit__(self, *exc_info):
        self.depth -= 1
        if self.depth == 0 and self.pending and exc_info[0] is None:
            self.pending = False
            raise Interrupted()


_writing = _WriteGuard()


def append_record(fh, record: dict) -> None:
    """Append one JSON line and force it to disk (a kill can only ever lose the line being made)."""
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with _writing:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def write_flat_json(jsonl_path: str | Path, json_path: str | Path) -> Path:
    """Write the conversations in the flat shape of earlier persona experiments:
    ``[{"conv": [...], "restyled_conv": [...] | null, "seed", "motivation", "disposition", "word"}, ...]``."""
    flat = []
    for record in read_records(jsonl_path):
        meta = record.get("meta") or {}
        persona = meta.get("persona") or {}
        flat.append({"conv": record["messages"], "restyled_conv": meta.get("restyled"), "seed": meta.get("seed"),
                     "motivation": persona.get("motivation"), "disposition": persona.get("disposition"),
                     "word": meta.get("word"), "key": meta.get("key")})
    json_path = Path(json_path)
    partial = json_path.with_name(json_path.name + ".partial")
    partial.write_text(json.dumps(flat, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(partial, json_path)
    return json_path


def output_counts(path: str | Path) -> dict:
    """Counts for a dataset card: conversations, messages, distinct words / seeds / personas."""
    records = read_records(path)
    metas = [r.get("meta") or {} for r in records]
    counts = {"conversations": len(records), "messages": sum(len(r["messages"]) for r in records)}
    words = {m["word"] for m in metas if m.get("word")}
    seeds = {m["seed"] for m in metas if m.get("seed")}
    personas = {json.dumps(m["persona"], sort_keys=True) for m in metas if m.get("persona")}
    counts.update({k: len(v) for k, v in (("words", words), ("seeds", seeds), ("personas", personas)) if v})
    return counts


# --------------------------------------------------------------------------- runs


@dataclass
class Progress:
    """Where a run stands; ``run`` yields one as each conversation ends."""

    total: int | None
    """Items this run has to make (``None`` when running forever)."""
    skipped: int = 0
    """Items already in the output file (finished by an earlier run)."""
    kept: int = 0
    dropped: int = 0
    """Generated conversations the filters rejected (an item may be retried)."""
    gave_up: int = 0
    """Items with no kept conversation after ``max_attempts``."""
    elapsed: float = 0.0
    latest: list[Result] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    finished: bool = False
    cancelled: bool = False

    @property
    def done(self) -> int:
        return self.kept + self.gave_up

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far; None before the first item is done or when running forever."""
        if self.total is None or self.done == 0:
            return None
        return max(0.0, self.elapsed / self.done * (self.total - self.done))

    @property
    def per_minute(self) -> float:
        return 60.0 * self.kept / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        """``kept 5 · dropped 2 · 5/8 · ETA 0:42``"""
        parts = [f"kept {self.kept}", f"dropped {self.dropped}"]
        if self.gave_up:
            parts.append(f"gave up {self.gave_up}")
        if self.total is not None:
            parts.append(f"{self.done}/{self.total}")
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        if self.finished:
            parts.append(f"took {format_seconds(self.elapsed)}")
        elif self.eta is not None:
            parts.append(f"ETA {format_seconds(self.eta)}")
        return " · ".join(parts)


def format_seconds(seconds: float) -> str:
    """``75`` -> ``'1:15'``; ``3700`` -> ``'1:01:40'``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def model_label(lm) -> str:
    spec = getattr(lm, "spec", None)
    return spec.label if spec is not None else "unknown"


def run(lm, job: Job, out_path: str | Path, *, sampling=None, batch_size: int = SynthSampling.batch_size, stop: Stop | None = None,
        forever: bool = False) -> Iterator[Progress]:
    """Generate the job's conversations into ``out_path`` (chat JSONL), yielding progress as each one ends.

    ``batch_size`` conversations are made at once, and a new one starts as soon as one ends. Each kept
    conversation is appended and fsynced at once; items already in the file are skipped, so an
    interrupted run resumes where it stopped. Failed items are retried (up to ``job.max_attempts``) as
    soon as they fail. ``forever`` keeps making new samples until ``stop`` is set.
    """
    if not 1 <= batch_size <= 512:
        raise ConfigError(f"batch size: expected 1 to 512, got {batch_size}")
    sampling = sampling or default_sampling(job)
    stop = stop or Stop()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(out_path)
    done = done_keys(out_path)
    attempts = job.max_attempts if sampling.do_sample else 1
    if forever:
        todo: Iterator[Item] = (i for i in job.items(forever=True) if i.key not in done)
        progress = Progress(total=None, skipped=len(done))
    else:
        all_items = list(job.items())
        pending = [i for i in all_items if i.key not in done]
        progress = Progress(total=len(pending), skipped=len(all_items) - len(pending))
        todo = iter(pending)
    retry: deque[tuple[Item, int]] = deque()
    make = program_for(lm, job)

    def source():
        """Retries first (so items finish early), then new items."""
        item, attempt = retry.popleft() if retry else (next(todo, None), 0)
        return None if item is None else ((item, attempt), make(item))

    started = time.monotonic()
    yield progress
    with open(out_path, "a", encoding="utf-8") as fh:
        for finished in pipeline(lm, source, sampling, batch_size, stop):
            (_, attempt), result = finished.key, finished.value
            result.attempt = attempt
            if result.kept:
                with _writing:  # an interrupt waits: the count always matches the lines written
                    append_record(fh, make_record(result, job, model_label(lm), sampling))
                    progress.kept += 1
            else:
                progress.dropped += 1
                progress.reasons.update(result.faults)
                if attempt + 1 < attempts:
                    retry.append((result.item, attempt + 1))
                else:
                    progress.gave_up += 1
            progress.latest = [result]
            progress.elapsed = time.monotonic() - started
            yield progress
            progress.latest = []
    progress.finished = not stop.is_set()
    progress.cancelled = not progress.finished
    progress.elapsed = time.monotonic() - started
    yield progress


def preview(lm, job: Job, n: int = 3, sampling=None, batch_size: int = SynthSampling.batch_size) -> list[Result]:
    """One attempt at the first ``n`` items, kept or not (nothing is written): check the prompts first."""
    items = list(itertools.islice(job.items(), n))
    return generate_items(lm, job, items, sampling or default_sampling(job), batch_size)


def transcript(messages: Sequence[dict], roles: Sequence[str] = ("User", "Assistant")) -> str:
    """Messages as ``User: ...`` lines, for previews and tables."""
    names = {"user": roles[0], "assistant": roles[1], "system": "System"}
    return "\n".join(f"{names.get(m['role'], m['role'])}: {m['content']}" for m in messages)


# --------------------------------------------------------------------------- Hub


def dataset_config(job: Job, model: str, sampling) -> dict:
    """What the dataset card records about how the conversations were made."""
    return {**job.to_config(), "model": model, "sampling": sampling.to_dict(), "generator": "convo synth"}


def push_to_hub(out_path: str | Path, repo_id: str, *, token: str | None, config: Mapping[str, Any],
                private: bool = False) -> str:
    """Push a chat JSONL output as a Hub dataset, with a card recording ``config``; returns the URL."""
    from . import hub

    counts = output_counts(out_path)
    if not counts["conversations"]:
        raise hub.HubError("No conversations to push yet: run the generation first.")
    card = hub.dataset_card(repo_id=hub.validate_repo_id(repo_id), config=dict(config), counts=counts)
    return hub.push_dataset([Path(out_path)], repo_id, token=token, private=private, card=card)


if __name__ == "__main__":  # python -m convo.synth: the same as python -m convo synth
    from convo.cli.synth import main

    sys.exit(main())
