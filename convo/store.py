"""SQLite store of conversations (saved as the user chats), immutable share links and per-user memory.

Use: ``store = Store()`` (file under :func:`data_dir`), then ``save_conversation``,
``create_share`` / ``get_share`` / ``revoke_share``; export with ``conversation_to_json`` / ``_markdown``.

Limits (:class:`Limits`): characters per message and per conversation or share, shares per
creator per hour, and free disk space kept for the data dir; a write over one raises
:class:`LimitError`, whose message says which limit and by how much.

Why one module: one SQLite schema with its migrations; conversations, share links and memory share
connections, transactions and the migration list.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

__all__ = [
    "Conversation",
    "ConversationSummary",
    "LimitError",
    "Limits",
    "Memory",
    "MIGRATIONS",
    "ROLES",
    "SCHEMA_VERSION",
    "SharedConversation",
    "ShareTicket",
    "Store",
    "conversation_to_json",
    "conversation_to_markdown",
    "data_dir",
    "is_valid_id",
    "new_id",
    "validate_messages",
]

ROLES = ("system", "user", "assistant")

# Persistent storage on a Hugging Face Space is mounted here (when the Space has it enabled).
SPACE_PERSISTENT_DIR = Path("/data")

# secrets.token_urlsafe(16) is 16 random bytes in unpadded URL-safe base64: 22 characters, and
# the last one carries only 2 data bits (4 zero padding bits), so it is one of A, Q, g, w.
# Checking that exactly keeps junk (and SQL-ish strings) away from the database.
_ID_BYTES = 16
_ID_RE = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")
_SECRET_BYTES = 32


# --------------------------------------------------------------------------- limits


class LimitError(ValueError):
    """A write refused by one of the store's :class:`Limits`; ``str()`` is the message for the user."""


@dataclass(frozen=True)
class Limits:
    """What one conversation or share may hold, how often shares are made, and the disk kept free."""

    message_chars: int = 100_000
    """Most characters in one message."""
    conversation_chars: int = 1_000_000
    """Most characters in one saved conversation or share (all messages together)."""
    messages: int = 2_000
    """Most messages in one conversation or share."""
    shares_per_hour: int = 30
    """Shares one creator (signed-in user, else client address) may make in an hour."""
    min_free_bytes: int = 200_000_000
    """Writes stop while the data dir's disk has less free space than this."""


def check_size(messages: list[dict[str, str]], limits: Limits, what: str = "conversation") -> None:
    """Raise :class:`LimitError` when a message or the whole conversation is over ``limits``."""
    if len(messages) > limits.messages:
        raise LimitError(f"this {what} has {len(messages):,} messages, over the limit of {limits.messages:,}")
    total = 0
    for index, message in enumerate(messages):
        size = len(message["content"])
        if size > limits.message_chars:
            raise LimitError(f"messages[{index}] is {size:,} characters long, over the limit of "
                             f"{limits.message_chars:,} characters per message")
        total += size
    if total > limits.conversation_chars:
        raise LimitError(f"this {what} is {total:,} characters long, over the limit of "
                         f"{limits.conversation_chars:,} characters")


# --------------------------------------------------------------------------- locations


def data_dir() -> Path:
    """Directory for convo's persistent data, created if missing.

    ``$CONVO_DATA_DIR`` if set; else ``/data`` on a Hugging Face Space (``$SPACE_ID`` set) with
    writable persistent storage; else the platform's user data dir (e.g. ``~/.local/share/convo``).
    """
    configured = os.environ.get("CONVO_DATA_DIR")
    if configured:
        path = Path(configured).expanduser()
    elif os.environ.get("SPACE_ID") and _is_writable_dir(SPACE_PERSISTENT_DIR):
        path = SPACE_PERSISTENT_DIR
    else:
        path = Path(platformdirs.user_data_dir("convo"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _is_writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


# --------------------------------------------------------------------------- ids and validation


def new_id() -> str:
    """A fresh random id: 22 URL-safe characters, 128 random bits (``secrets.token_urlsafe(16)``)."""
    return secrets.token_urlsafe(_ID_BYTES)


def is_valid_id(value: object) -> bool:
    """True when ``value`` has exactly the shape :func:`new_id` produces.

    >>> is_valid_id(new_id()), is_valid_id("../etc/passwd")
    (True, False)
    """
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def validate_messages(messages: object) -> list[dict[str, str]]:
    """Check a conversation and return a clean copy holding only ``role`` and ``content``.

    Raises ``ValueError`` naming the first message and field at fault, e.g.
    ``messages[2].role: expected one of system, user, assistant, got 'bot'``.
    Extra keys (Gradio adds ``metadata``/``options``) are dropped, not stored.
    """
    if not isinstance(messages, (list, tuple)):
        raise ValueError(
            f"messages: expected a list of {{'role', 'content'}} dicts, got {type(messages).__name__}"
        )
    clean = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise ValueError(f"{where}: expected a dict with 'role' and 'content', got {type(message).__name__}")
        for key in ("role", "content"):
            if key not in message:
                raise ValueError(f"{where}.{key}: missing")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise ValueError(f"{where}.role: expected one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"{where}.content: expected str, got {type(content).__name__}")
        clean.append({"role": role, "content": content})
    return clean


def _settings_json(settings: object) -> str:
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise ValueError(f"settings: expected a dict, got {type(settings).__name__}")
    try:
        return json.dumps(dict(settings), sort_keys=True, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"settings: not JSON-serializable: {error}") from None


def _check_optional_str(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name}: expected str or None, got {type(value).__name__}")


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Conversation:
    """A user's saved conversation; it changes as they chat (unlike a share)."""

    id: str
    """Random 22-character id (the capability that lets a browser find it again)."""
    messages: list[dict[str, str]]
    """``[{"role", "content"}, ...]``."""
    owner: str | None
    """Hugging Face username of the signed-in user, None when anonymous."""
    model: str
    """Model name or Hub id the conversation was held with."""
    adapter: str | None
    """LoRA adapter name or path, if one was loaded."""
    settings: dict[str, Any]
    """Generation settings (temperature, ...), as plain JSON data."""
    created: float
    """Epoch seconds of the first save."""
    updated: float
    """Epoch seconds of the latest save."""


@dataclass(frozen=True)
class ConversationSummary:
    """One line of a user's conversation list."""

    id: str
    title: str
    """The first user message, shortened."""
    model: str
    updated: float


@dataclass(frozen=True)
class SharedConversation:
    """An immutable snapshot behind a share link."""

    id: str
    """The share id: 22 URL-safe characters, 128 random bits."""
    messages: list[dict[str, str]]
    model: str
    adapter: str | None
    settings: dict[str, Any]
    created: float
    """Epoch seconds when the link was created."""
    expires: float | None
    """Epoch seconds after which the link stops working; None for never."""


@dataclass(frozen=True)
class Memory:
    """A fact a user told the chat about themselves, kept for that user only."""

    id: int
    fact: str
    """In the second person, as shown to the user: "You just got back from hiking in Norway"."""
    question: str | None
    """A follow-up question built from the fact, or None when it makes none."""
    created: float


MAX_MEMORIES = 100
"""Facts kept per user; the oldest go first."""


@dataclass(frozen=True)
class ShareTicket:
    """What the creator of a share gets back, once: the link id and the revoke secret."""

    id: str
    secret: str = field(repr=False)
    """Revoke secret; only its sha256 is stored, so it cannot be shown again. Kept out of repr/logs."""
    created: float = 0.0
    expires: float | None = None


# --------------------------------------------------------------------------- schema


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Conversations and share snapshots."""
    conn.execute(
        """CREATE TABLE conversations (
            id       TEXT PRIMARY KEY,
            owner    TEXT,
            model    TEXT NOT NULL DEFAULT '',
            adapter  TEXT,
            settings TEXT NOT NULL DEFAULT '{}',
            messages TEXT NOT NULL,
            created  REAL NOT NULL,
            updated  REAL NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE shares (
            id              TEXT PRIMARY KEY,
            conversation_id TEXT REFERENCES conversations(id) ON DELETE SET NULL,
            owner           TEXT,
            model           TEXT NOT NULL DEFAULT '',
            adapter         TEXT,
            settings        TEXT NOT NULL DEFAULT '{}',
            messages        TEXT NOT NULL,
            secret_hash     TEXT NOT NULL,
            created         REAL NOT NULL,
            revoked         REAL
        )"""
    )


def _migrate_v2(conn: sqlite3.Connection) -> None:
    """Share expiry, and indexes for "my conversations" / "my shares" lists."""
    conn.execute("ALTER TABLE shares ADD COLUMN expires REAL")
    conn.execute("CREATE INDEX conversations_by_owner ON conversations(owner, updated DESC)")
    conn.execute("CREATE INDEX shares_by_owner ON shares(owner, created DESC)")


def _migrate_v3(conn: sqlite3.Connection) -> None:
    """Per-user memory: facts a user told the chat about themselves (see convo.memory)."""
    conn.execute(
        """CREATE TABLE memories (
            id       INTEGER PRIMARY KEY,
            owner    TEXT NOT NULL,
            fact     TEXT NOT NULL,
            question TEXT,
            created  REAL NOT NULL,
            UNIQUE (owner, fact)
        )"""
    )


def _migrate_v4(conn: sqlite3.Connection) -> None:
    """Share rate limit that survives a restart: one row per share made in the last hour, keyed by a
    hash of who made it (the owner or the client's address; the address itself is not kept)."""
    conn.execute("CREATE TABLE share_events (creator TEXT NOT NULL, created REAL NOT NULL)")
    conn.execute("CREATE INDEX share_events_by_creator ON share_events(creator, created)")


# Applied in order; MIGRATIONS[i] takes a database from user_version i to i + 1. Append only:
# never edit a shipped migration, databases in the wild already ran it.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_migrate_v1, _migrate_v2, _migrate_v3, _migrate_v4)
SCHEMA_VERSION = len(MIGRATIONS)


# --------------------------------------------------------------------------- store


class Store:
    """Conversations and share links in one SQLite file (WAL mode), safe to share between threads.

    >>> store = Store(tmp_path / "convo.sqlite3")  # doctest: +SKIP
    >>> ticket = store.create_share([{"role": "user", "content": "hi"}], model="m", adapter=None, settings={})  # doctest: +SKIP
    >>> store.get_share(ticket.id).messages  # doctest: +SKIP
    [{'role': 'user', 'content': 'hi'}]

    One connection guarded by a lock: Gradio handlers run in a thread pool, and each call here is
    a few milliseconds, so serialising them is simpler than a connection per thread and as fast.
    Other processes on the same file wait up to 5 s for the write lock (``busy_timeout``).
    ``clock`` returns epoch seconds; tests pass their own to exercise expiry without sleeping.
    """

    def __init__(self, path: str | Path | None = None, *, clock: Callable[[], float] = time.time,
                 limits: Limits = Limits()) -> None:
        self.path = Path(path) if path is not None else data_dir() / "convo.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self.limits = limits
        self._lock = threading.RLock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so migrations are truly atomic.
        self._conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
        try:
            self._configure()
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # -- lifecycle

    def close(self) -> None:
        """Close the database connection; the store cannot be used afterwards."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def _configure(self) -> None:
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable across application crashes in WAL mode; only a power cut may lose
        # the last commits, never corrupt the file.
        self._conn.execute("PRAGMA synchronous = NORMAL")

    def _migrate(self) -> None:
        with self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: database schema version {version} is newer than this convo "
                    f"supports ({SCHEMA_VERSION}); upgrade convo"
                )
            for number in range(version, SCHEMA_VERSION):
                MIGRATIONS[number](conn)
            if version != SCHEMA_VERSION:
                # user_version lives in the file header, so it commits or rolls back with the rest.
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so two writers never deadlock on an upgrade.
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _check_disk(self) -> None:
        free = shutil.disk_usage(self.path.parent).free
        if free < self.limits.min_free_bytes:
            raise LimitError(f"the server's disk is nearly full ({free / 1e6:,.0f} MB free, "
                             f"{self.limits.min_free_bytes / 1e6:,.0f} MB kept free): nothing more can be saved now")

    def _count_share(self, conn: sqlite3.Connection, creator: str | None) -> None:
        """At most ``limits.shares_per_hour`` shares per creator in any hour, counted in the database
        (inside the share's own transaction), so neither a restart nor a second process resets it."""
        if not creator:
            return
        now = self._clock()
        key = hashlib.sha256(creator.encode("utf-8", "surrogatepass")).hexdigest()
        conn.execute("DELETE FROM share_events WHERE created <= ?", (now - 3600,))
        times = [row[0] for row in conn.execute(
            "SELECT created FROM share_events WHERE creator = ? ORDER BY created", (key,))]
        if len(times) >= self.limits.shares_per_hour:
            wait = int(times[0] + 3600 - now) + 1
            raise LimitError(f"too many shares: {self.limits.shares_per_hour} an hour at most; "
                             f"try again in {wait // 60} min {wait % 60} s")
        conn.execute("INSERT INTO share_events (creator, created) VALUES (?, ?)", (key, now))

    def schema_version(self) -> int:
        """The database's ``PRAGMA user_version`` (equals :data:`SCHEMA_VERSION` once opened)."""
        return self._read("PRAGMA user_version")[0][0]

    # -- conversations

    def save_conversation(
        self,
        messages: list[dict],
        *,
        conversation_id: str | None = None,
        owner: str | None = None,
        model: str = "",
        adapter: str | None = None,
        settings: dict | None = None,
    ) -> str:
        """Insert a conversation, or replace the messages/model/settings of an existing one; return its id.

        A conversation owned by a signed-in user can only be saved again by that user
        (``PermissionError`` otherwise); an anonymous one is claimed by the first owner who saves it.
        Over a size limit or with the disk nearly full it raises :class:`LimitError`.
        """
        clean = validate_messages(messages)
        check_size(clean, self.limits)
        self._check_disk()
        settings_json = _settings_json(settings)
        if not isinstance(model, str):
            raise ValueError(f"model: expected str, got {type(model).__name__}")
        _check_optional_str("adapter", adapter)
        _check_optional_str("owner", owner)
        if conversation_id is None:
            conversation_id = new_id()
        elif not is_valid_id(conversation_id):
            raise ValueError(
                f"conversation_id: expected an id returned by save_conversation, got {conversation_id!r}"
            )
        messages_json = json.dumps(clean, ensure_ascii=False)
        now = self._clock()
        with self._transaction() as conn:
            row = conn.execute("SELECT owner FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO conversations (id, owner, model, adapter, settings, messages, created, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (conversation_id, owner, model, adapter, settings_json, messages_json, now, now),
                )
            elif row[0] is not None and row[0] != owner:
                raise PermissionError(f"conversation {conversation_id} belongs to another user")
            else:
                conn.execute(
                    "UPDATE conversations SET owner = ?, model = ?, adapter = ?, settings = ?, messages = ?,"
                    " updated = ? WHERE id = ?",
                    (owner if owner is not None else row[0], model, adapter, settings_json, messages_json,
                     now, conversation_id),
                )
        return conversation_id

    def load_conversation(self, conversation_id: str) -> Conversation | None:
        """The saved conversation with this id, or None for unknown or malformed ids."""
        if not is_valid_id(conversation_id):
            return None
        rows = self._read(
            "SELECT id, messages, owner, model, adapter, settings, created, updated"
            " FROM conversations WHERE id = ?",
            (conversation_id,),
        )
        if not rows:
            return None
        id_, messages, owner, model, adapter, settings, created, updated = rows[0]
        return Conversation(
            id=id_, messages=json.loads(messages), owner=owner, model=model, adapter=adapter,
            settings=json.loads(settings), created=created, updated=updated,
        )

    def list_conversations(self, owner: str, *, limit: int = 50) -> list[ConversationSummary]:
        """A signed-in user's conversations, most recently updated first."""
        rows = self._read(
            "SELECT id, messages, model, updated FROM conversations WHERE owner = ?"
            " ORDER BY updated DESC LIMIT ?",
            (owner, int(limit)),
        )
        return [
            ConversationSummary(id=id_, title=_title(json.loads(messages)), model=model, updated=updated)
            for id_, messages, model, updated in rows
        ]

    def delete_conversation(self, conversation_id: str, *, owner: str | None = None) -> bool:
        """Delete a conversation if ``owner`` matches its owner (None matches an anonymous one).

        Shares made from it stay valid: they are snapshots.
        """
        if not is_valid_id(conversation_id):
            return False
        with self._transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM conversations WHERE id = ? AND owner IS ?", (conversation_id, owner)
            )
            return cursor.rowcount == 1

    # -- shares

    def create_share(
        self,
        messages: list[dict],
        *,
        model: str,
        adapter: str | None,
        settings: dict,
        owner: str | None = None,
        expires_in: float | None = None,
        conversation_id: str | None = None,
        creator: str | None = None,
    ) -> ShareTicket:
        """Snapshot a conversation behind a new random link id; return the id and a one-time revoke secret.

        ``expires_in`` is in seconds (None: never). ``conversation_id`` optionally records which
        saved conversation it came from; the snapshot never changes when that conversation does.
        ``creator`` (the owner, else the client's address) is rate-limited; over a size or rate
        limit, or with the disk nearly full, it raises :class:`LimitError`.
        """
        clean = validate_messages(messages)
        if not clean:
            raise ValueError("messages: nothing to share, the conversation is empty")
        check_size(clean, self.limits, "share")
        self._check_disk()
        settings_json = _settings_json(settings)
        if not isinstance(model, str):
            raise ValueError(f"model: expected str, got {type(model).__name__}")
        _check_optional_str("adapter", adapter)
        _check_optional_str("owner", owner)
        if expires_in is not None and (
            isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or not expires_in > 0
        ):
            raise ValueError(f"expires_in: expected a positive number of seconds or None, got {expires_in!r}")
        if conversation_id is not None and not is_valid_id(conversation_id):
            raise ValueError(f"conversation_id: expected an id returned by save_conversation, got {conversation_id!r}")
        share_id, secret = new_id(), secrets.token_urlsafe(_SECRET_BYTES)
        created = self._clock()
        expires = created + float(expires_in) if expires_in is not None else None
        try:
            with self._transaction() as conn:
                self._count_share(conn, owner or creator)
                conn.execute(
                    "INSERT INTO shares (id, conversation_id, owner, model, adapter, settings, messages,"
                    " secret_hash, created, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (share_id, conversation_id, owner, model, adapter, settings_json,
                     json.dumps(clean, ensure_ascii=False), _hash_secret(secret), created, expires),
                )
        except sqlite3.IntegrityError as error:
            if "FOREIGN KEY" in str(error):
                raise ValueError(f"conversation_id: no saved conversation {conversation_id!r}") from None
            raise
        return ShareTicket(id=share_id, secret=secret, created=created, expires=expires)

    def get_share(self, share_id: str) -> SharedConversation | None:
        """The snapshot behind a link; None for unknown, malformed, revoked or expired ids."""
        if not is_valid_id(share_id):
            return None
        rows = self._read(
            "SELECT id, messages, model, adapter, settings, created, expires FROM shares"
            " WHERE id = ? AND revoked IS NULL",
            (share_id,),
        )
        if not rows:
            return None
        id_, messages, model, adapter, settings, created, expires = rows[0]
        if expires is not None and self._clock() >= expires:
            return None
        return SharedConversation(
            id=id_, messages=json.loads(messages), model=model, adapter=adapter,
            settings=json.loads(settings), created=created, expires=expires,
        )

    def revoke_share(self, share_id: str, *, secret: str | None = None, owner: str | None = None) -> bool:
        """Revoke a link for good if ``secret`` is its revoke secret or ``owner`` is its (non-null) owner.

        Returns True when the caller is allowed (revoking twice is harmless and True again),
        False for unknown/malformed ids or a wrong secret and owner.
        """
        if not is_valid_id(share_id):
            return False
        with self._transaction() as conn:
            row = conn.execute("SELECT secret_hash, owner FROM shares WHERE id = ?", (share_id,)).fetchone()
            if row is None:
                return False
            stored_hash, stored_owner = row
            secret_ok = isinstance(secret, str) and hmac.compare_digest(_hash_secret(secret), stored_hash)
            owner_ok = stored_owner is not None and owner is not None and hmac.compare_digest(
                owner.encode("utf-8"), stored_owner.encode("utf-8")
            )
            if not (secret_ok or owner_ok):
                return False
            conn.execute(
                "UPDATE shares SET revoked = ? WHERE id = ? AND revoked IS NULL", (self._clock(), share_id)
            )
            return True

    def list_shares(self, owner: str) -> list[SharedConversation]:
        """A signed-in user's live (not revoked, not expired) shares, newest first."""
        rows = self._read(
            "SELECT id FROM shares WHERE owner = ? AND revoked IS NULL ORDER BY created DESC", (owner,)
        )
        shares = (self.get_share(share_id) for (share_id,) in rows)
        return [share for share in shares if share is not None]

    # -- memory (facts a user told the chat about themselves; convo.memory decides what they are)

    def remember(self, owner: str, fact: str, question: str | None = None) -> bool:
        """Keep ``fact`` for ``owner`` (a second copy of the same fact is not added); True if new.
        Only the newest :data:`MAX_MEMORIES` facts of an owner are kept."""
        if not (isinstance(owner, str) and owner and isinstance(fact, str) and fact.strip()):
            raise ValueError("remember: owner and fact must be non-empty strings")
        _check_optional_str("question", question)
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO memories (owner, fact, question, created) VALUES (?, ?, ?, ?)",
                (owner, fact.strip(), question, self._clock()),
            )
            conn.execute(
                "DELETE FROM memories WHERE owner = ? AND id NOT IN"
                " (SELECT id FROM memories WHERE owner = ? ORDER BY created DESC, id DESC LIMIT ?)",
                (owner, owner, MAX_MEMORIES),
            )
            return cursor.rowcount == 1

    def memories(self, owner: str) -> list[Memory]:
        """``owner``'s facts, newest first (nobody else's)."""
        rows = self._read(
            "SELECT id, fact, question, created FROM memories WHERE owner = ? ORDER BY created DESC, id DESC",
            (owner,),
        )
        return [Memory(id=id_, fact=fact, question=question, created=created) for id_, fact, question, created in rows]

    def forget(self, owner: str, memory_id: int | None = None) -> int:
        """Delete one of ``owner``'s facts (``memory_id``), or all of them (None); the rows are gone.
        Returns how many were deleted (0 for another owner's id)."""
        with self._transaction() as conn:
            if memory_id is None:
                cursor = conn.execute("DELETE FROM memories WHERE owner = ?", (owner,))
            else:
                cursor = conn.execute("DELETE FROM memories WHERE owner = ? AND id = ?", (owner, int(memory_id)))
            return cursor.rowcount


def _title(messages: list[dict[str, str]], width: int = 60) -> str:
    first = next((m["content"] for m in messages if m["role"] == "user"), "")
    first = " ".join(first.split())
    return first if len(first) <= width else first[: width - 1] + "…"


# --------------------------------------------------------------------------- export


def _snapshot_fields(snapshot: object) -> dict[str, Any]:
    """Plain fields of a Conversation, SharedConversation or dict with the same keys."""
    if isinstance(snapshot, (Conversation, SharedConversation)):
        data: Mapping[str, Any] = {
            "id": snapshot.id, "messages": snapshot.messages, "model": snapshot.model,
            "adapter": snapshot.adapter, "settings": snapshot.settings, "created": snapshot.created,
        }
    elif isinstance(snapshot, Mapping):
        data = snapshot
        if "messages" not in data:
            raise ValueError("snapshot.messages: missing")
    else:
        raise ValueError(
            f"snapshot: expected a Conversation, SharedConversation or dict, got {type(snapshot).__name__}"
        )
    settings = data.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ValueError(f"snapshot.settings: expected a dict, got {type(settings).__name__}")
    return {
        "id": data.get("id"),
        "created": _iso_time(data.get("created")),
        "model": data.get("model") or "",
        "adapter": data.get("adapter"),
        "settings": dict(settings),
        "messages": validate_messages(data["messages"]),
    }


def _iso_time(created: object) -> str | None:
    if created is None or isinstance(created, str):
        return created
    if isinstance(created, (int, float)) and not isinstance(created, bool):
        return _dt.datetime.fromtimestamp(created, _dt.timezone.utc).isoformat(timespec="seconds")
    raise ValueError(f"snapshot.created: expected epoch seconds or an ISO string, got {type(created).__name__}")


def conversation_to_json(snapshot: Conversation | SharedConversation | Mapping[str, Any]) -> str:
    """Pretty JSON: ``id`` (if known), ``created`` (ISO 8601, UTC), ``model``, ``adapter``, ``settings``, ``messages``."""
    fields = _snapshot_fields(snapshot)
    if fields["id"] is None:
        del fields["id"]
    return json.dumps(fields, indent=2, ensure_ascii=False) + "\n"


def conversation_to_markdown(snapshot: Conversation | SharedConversation | Mapping[str, Any]) -> str:
    """Markdown: a title, a model line, the system prompt as a quote, then ``**User:**``/``**Assistant:**`` turns.

    >>> print(conversation_to_markdown({"messages": [{"role": "user", "content": "Hi"}], "model": "m"}))
    # Conversation
    <BLANKLINE>
    **Model:** m
    <BLANKLINE>
    **User:** Hi
    <BLANKLINE>
    """
    fields = _snapshot_fields(snapshot)
    model_line = f"**Model:** {fields['model'] or 'unknown'}"
    if fields["adapter"]:
        model_line += f" + adapter {fields['adapter']}"
    if fields["created"]:
        model_line += f" · {fields['created']}"
    blocks = ["# Conversation", model_line]
    for message in fields["messages"]:
        blocks.append(_markdown_turn(message))
    return "\n\n".join(blocks) + "\n"


def _markdown_turn(message: dict[str, str]) -> str:
    if message["role"] == "system":
        lines = ["**System prompt:**", *message["content"].splitlines()]
        return "\n".join(f"> {line}".rstrip() for line in lines)
    label = "User" if message["role"] == "user" else "Assistant"
    return f"**{label}:** {message['content']}"
