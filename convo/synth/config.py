"""Keyword and persona configs and templates: reading and checking what a synthetic run is given (seed
files: ``seeds``)."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import MAX_DEPTH, decode_marked, json_depth
from .parsing import word_forms


PERSONA, KEYWORD = "persona", "keyword"
MODES = (PERSONA, KEYWORD)
AGENTS, SCRIPT, TURNS = "agents", "script", "turns"
STRATEGIES = (AGENTS, SCRIPT)
"""Persona mode strategies."""
KEYWORD_STRATEGIES = (TURNS, SCRIPT)
"""Keyword mode strategies."""
DEFAULT_ROLES = ("STUDENT", "TEACHER")
PERSONA_SCRIPT_ROLES = ("USER", "ASSISTANT")
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
_UNCLOSED = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?=$|\s|\{)")
"""A brace and a name that no "}" ends before a space: a typo when the name is a placeholder's ("{word
and {word}}"), else other text's braces ("{return x}"); a schema's "{word: definition}" is the prompt's."""
KEYWORD_FIELDS = ("word",)


def check_template(template: str, allowed: Sequence[str], where: str, positional: bool = True) -> str:
    """Raise ConfigError if ``template`` uses a ``{name}`` outside ``allowed`` (a typo would stay in the prompt).

    >>> check_template("Be {disposition}", PERSONA_FIELDS, "template")
    'Be {disposition}'
    """
    if positional and re.search(r"(?<!\{)\{\}(?!\})|\{\d+\}", template):
        # str.format-style positional slots: nothing says which is the persona and which the seed
        names = ", ".join("{" + name + "}" for name in allowed[:3])
        raise ConfigError(f"{where}: positional placeholders {{}} or {{0}} cannot be filled (nothing says which "
                          f"is which): write named ones instead, e.g. {names}")
    names = ", ".join("{" + name + "}" for name in allowed)
    unknown = sorted(set(_PLACEHOLDER.findall(template)) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown placeholder {{{unknown[0]}}} (use {names})")
    unclosed = next((m for m in _UNCLOSED.finditer(template) if m.group(1) in allowed), None)
    if unclosed:
        raise ConfigError(f"{where}: {unclosed.group(0)!r} opens a placeholder it does not close (use {names})")
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
        for i, line in enumerate(self.prompt_lines):  # a {topic} or a "{word" went to the model as written
            check_template(line, KEYWORD_FIELDS, f"prompt_lines[{i}]", positional=False)  # ("{}": JSON's)
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
        # a kept conversation mentions its word: where an exclude entry matches every form of the word,
        # every attempt would be generated and then dropped
        patterns = compile_exclude(self.exclude)
        for i, word in enumerate(self.words):
            entry = next((entry for entry, pattern in patterns
                          if all(pattern.search(form) for form in word_forms(word))), None)
            if entry is not None:
                raise ConfigError(f'words[{i}]: "{word}" matches exclude "{entry}", so no conversation about it '
                                  "could be kept (a kept one mentions its word): remove one of them")
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


def decode_text(data: bytes, encoding: str = "utf-8") -> str:
    """An uploaded text file's bytes -> text, with universal newlines: UTF-16 or UTF-32 when it starts
    with that byte-order mark (Windows editors, PowerShell), else ``encoding``. Raises
    ``UnicodeDecodeError``, or ``ValueError`` for a byte-order mark followed by invalid text."""
    marked = decode_marked(data)
    text = marked if marked is not None else data.decode(encoding)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text(path: Path, encoding: str = "utf-8", fallback: str | None = None) -> str:
    """A config or seed file's text (:func:`decode_text`), or a ConfigError naming the file;
    ``fallback``: the encoding of one that is not UTF-8 (Excel's CSV is in the Windows code page)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{Path(path).name}: file not found") from None
    try:
        try:
            return decode_text(data, encoding)
        except UnicodeDecodeError:
            if not fallback:
                raise
            return decode_text(data, fallback)
    except UnicodeDecodeError:
        raise ConfigError(f"{Path(path).name}: not UTF-8 text") from None
    except ValueError as exc:
        raise ConfigError(f"{Path(path).name}: {exc}") from None


def read_json(path: Path) -> Any:
    """A JSON file (UTF-8, or UTF-16/32 with its mark), parsed with the checks of ``_loads_checked``."""
    return _loads_checked(read_text(path), path.name)


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
    return keyword_config_from_dict(read_json(path), source=path.name)


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
        return decode_text(target.read_bytes()).strip()
    except FileNotFoundError:
        raise _fail(source, f"{where}.path: file not found: {rel}") from None
    except (UnicodeDecodeError, IsADirectoryError):
        raise _fail(source, f"{where}.path: not a UTF-8 text file: {rel}") from None
    except ValueError as exc:
        raise _fail(source, f"{where}.path: {rel} {exc}") from None


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
    return persona_config_from_dict(read_json(path), base_dir=path.parent, source=path.name, files=files)


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
