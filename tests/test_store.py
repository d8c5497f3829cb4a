"""Tests for convo.store: real SQLite files in tmp_path, real threads, no mocks.

Run: python -m pytest tests/test_store.py -q
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import threading
from pathlib import Path

import pytest

from convo import store as store_module
from convo.store import (
    SCHEMA_VERSION,
    Conversation,
    SharedConversation,
    Store,
    conversation_to_json,
    conversation_to_markdown,
    data_dir,
    new_id,
)

MESSAGES = [
    {"role": "system", "content": "You are curious.\nAsk one question at a time."},
    {"role": "user", "content": "Tell me about otters."},
    {"role": "assistant", "content": "Otters hold hands while sleeping. What made you think of otters?"},
    {"role": "user", "content": "A documentary."},
]
SETTINGS = {"temperature": 0.7, "max_new_tokens": 128, "curious": True}


class FakeClock:
    """A settable clock, so expiry is tested without sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "convo.sqlite3"


@pytest.fixture
def store(db_path: Path):
    with Store(db_path) as opened:
        yield opened


def share(store: Store, messages=MESSAGES, **kwargs):
    kwargs.setdefault("model", "tiny-gpt")
    kwargs.setdefault("adapter", None)
    kwargs.setdefault("settings", SETTINGS)
    return store.create_share(messages, **kwargs)


# --------------------------------------------------------------------------- data_dir


def test_data_dir_prefers_env_and_creates_it(tmp_path, monkeypatch):
    target = tmp_path / "nested" / "data"
    monkeypatch.setenv("CONVO_DATA_DIR", str(target))
    assert data_dir() == target
    assert target.is_dir()


def test_data_dir_uses_space_persistent_storage(tmp_path, monkeypatch):
    persistent = tmp_path / "persistent"
    persistent.mkdir()
    monkeypatch.delenv("CONVO_DATA_DIR", raising=False)
    monkeypatch.setattr(store_module, "SPACE_PERSISTENT_DIR", persistent)
    monkeypatch.setenv("SPACE_ID", "someone/convo")
    assert data_dir() == persistent


def test_data_dir_falls_back_to_user_dir_without_persistent_storage(tmp_path, monkeypatch):
    monkeypatch.delenv("CONVO_DATA_DIR", raising=False)
    monkeypatch.setenv("SPACE_ID", "someone/convo")
    monkeypatch.setattr(store_module, "SPACE_PERSISTENT_DIR", tmp_path / "missing")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "xdg" / "convo"
    assert (tmp_path / "xdg" / "convo").is_dir()


def test_default_store_path_is_under_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVO_DATA_DIR", str(tmp_path / "d"))
    with Store() as opened:
        assert opened.path == tmp_path / "d" / "convo.sqlite3"
    assert (tmp_path / "d" / "convo.sqlite3").is_file()


# --------------------------------------------------------------------------- schema and pragmas


def test_wal_mode_foreign_keys_and_schema_version(store, db_path):
    # Ask the file itself through a second, independent connection: WAL is persistent.
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(store_module.MIGRATIONS)
    finally:
        other.close()
    assert store._read("PRAGMA foreign_keys")[0][0] == 1
    assert store._read("PRAGMA busy_timeout")[0][0] == 5000
    assert store.schema_version() == SCHEMA_VERSION


V1_SCHEMA = """
CREATE TABLE conversations (
    id TEXT PRIMARY KEY, owner TEXT, model TEXT NOT NULL DEFAULT '', adapter TEXT,
    settings TEXT NOT NULL DEFAULT '{}', messages TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL
);
CREATE TABLE shares (
    id TEXT PRIMARY KEY, conversation_id TEXT REFERENCES conversations(id) ON DELETE SET NULL,
    owner TEXT, model TEXT NOT NULL DEFAULT '', adapter TEXT, settings TEXT NOT NULL DEFAULT '{}',
    messages TEXT NOT NULL, secret_hash TEXT NOT NULL, created REAL NOT NULL, revoked REAL
);
PRAGMA user_version = 1;
"""


def test_migration_from_hand_built_v1_keeps_rows(db_path):
    import hashlib

    conversation_id, share_id, secret = new_id(), new_id(), "old-secret"
    legacy = sqlite3.connect(db_path)
    legacy.executescript(V1_SCHEMA)
    legacy.execute(
        "INSERT INTO conversations VALUES (?, 'alice', 'old-model', NULL, '{\"temperature\": 0.5}', ?, 10.0, 20.0)",
        (conversation_id, json.dumps(MESSAGES)),
    )
    legacy.execute(
        "INSERT INTO shares VALUES (?, ?, 'alice', 'old-model', 'lora-a', '{}', ?, ?, 30.0, NULL)",
        (share_id, conversation_id, json.dumps(MESSAGES[:2]), hashlib.sha256(secret.encode()).hexdigest()),
    )
    legacy.commit()
    assert [r[1] for r in legacy.execute("PRAGMA table_info(shares)")].count("expires") == 0
    legacy.close()

    with Store(db_path) as migrated:
        assert migrated.schema_version() == SCHEMA_VERSION
        conversation = migrated.load_conversation(conversation_id)
        assert conversation == Conversation(
            id=conversation_id, messages=MESSAGES, owner="alice", model="old-model", adapter=None,
            settings={"temperature": 0.5}, created=10.0, updated=20.0,
        )
        shared = migrated.get_share(share_id)
        assert shared == SharedConversation(
            id=share_id, messages=MESSAGES[:2], model="old-model", adapter="lora-a", settings={},
            created=30.0, expires=None,
        )
        # The new column works, and the old revoke secret still does.
        assert share(migrated, expires_in=60).expires is not None
        assert migrated.revoke_share(share_id, secret=secret) is True
        assert migrated.get_share(share_id) is None

    check = sqlite3.connect(db_path)
    indexes = {row[1] for row in check.execute("PRAGMA index_list(shares)")}
    check.close()
    assert "shares_by_owner" in indexes


def test_failed_migration_rolls_back_everything(db_path, monkeypatch):
    def broken(conn):
        conn.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("boom")

    monkeypatch.setattr(store_module, "MIGRATIONS", (store_module.MIGRATIONS[0], broken))
    with pytest.raises(sqlite3.OperationalError, match="boom"):
        Store(db_path)
    check = sqlite3.connect(db_path)
    tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    version = check.execute("PRAGMA user_version").fetchone()[0]
    check.close()
    assert tables == set() and version == 0


def test_newer_schema_is_refused(db_path):
    newer = sqlite3.connect(db_path)
    newer.execute("PRAGMA user_version = 99")
    newer.close()
    with pytest.raises(RuntimeError, match=rf"schema version 99 is newer than this convo supports \({SCHEMA_VERSION}\)"):
        Store(db_path)


# --------------------------------------------------------------------------- conversations


def test_conversation_round_trip_and_update(db_path):
    clock = FakeClock()
    with Store(db_path, clock=clock) as opened:
        conversation_id = opened.save_conversation(
            MESSAGES[:2], owner="alice", model="tiny-gpt", adapter="lora-x", settings=SETTINGS
        )
        clock.now += 5
        same_id = opened.save_conversation(
            MESSAGES, conversation_id=conversation_id, owner="alice", model="tiny-gpt", settings=SETTINGS
        )
        assert same_id == conversation_id
        loaded = opened.load_conversation(conversation_id)
    assert loaded == Conversation(
        id=conversation_id, messages=MESSAGES, owner="alice", model="tiny-gpt", adapter=None,
        settings=SETTINGS, created=clock.now - 5, updated=clock.now,
    )


def test_conversation_extra_keys_are_dropped(store):
    conversation_id = store.save_conversation(
        [{"role": "user", "content": "hi", "metadata": {"title": "x"}, "options": []}]
    )
    assert store.load_conversation(conversation_id).messages == [{"role": "user", "content": "hi"}]


def test_conversation_of_another_owner_is_not_overwritten(store):
    conversation_id = store.save_conversation(MESSAGES, owner="alice")
    with pytest.raises(PermissionError, match=f"conversation {conversation_id} belongs to another user"):
        store.save_conversation(MESSAGES[:1], conversation_id=conversation_id, owner="mallory")
    with pytest.raises(PermissionError):
        store.save_conversation(MESSAGES[:1], conversation_id=conversation_id)
    assert store.load_conversation(conversation_id).messages == MESSAGES


def test_anonymous_conversation_is_claimed_on_sign_in(store):
    conversation_id = store.save_conversation(MESSAGES[:2])
    store.save_conversation(MESSAGES, conversation_id=conversation_id, owner="bob")
    assert store.load_conversation(conversation_id).owner == "bob"
    assert [summary.id for summary in store.list_conversations("bob")] == [conversation_id]
    assert store.list_conversations("bob")[0].title == "Tell me about otters."


def test_list_and_delete_conversations(db_path):
    clock = FakeClock()
    with Store(db_path, clock=clock) as opened:
        ids = []
        for index in range(3):
            clock.now += 1
            ids.append(opened.save_conversation([{"role": "user", "content": f"q{index}"}], owner="carol"))
        opened.save_conversation(MESSAGES, owner="dave")
        assert [s.id for s in opened.list_conversations("carol")] == ids[::-1]
        assert opened.delete_conversation(ids[0], owner="dave") is False
        assert opened.delete_conversation(ids[0], owner="carol") is True
        assert opened.load_conversation(ids[0]) is None
        assert [s.id for s in opened.list_conversations("carol", limit=1)] == [ids[2]]


def test_unknown_and_malformed_conversation_ids(store):
    assert store.load_conversation(new_id()) is None
    for bad in ["", "x", "' OR 1=1 --", "../../etc/passwd", new_id() + "A", None, 42]:
        assert store.load_conversation(bad) is None
    with pytest.raises(ValueError, match=r"^conversation_id: expected an id returned by save_conversation, got 'nope'$"):
        store.save_conversation(MESSAGES, conversation_id="nope")


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ("hello", "messages: expected a list of {'role', 'content'} dicts, got str"),
        ([MESSAGES[0], "hi"], "messages[1]: expected a dict with 'role' and 'content', got str"),
        ([{"content": "hi"}], "messages[0].role: missing"),
        ([{"role": "user"}], "messages[0].content: missing"),
        (
            [*MESSAGES[:2], {"role": "bot", "content": "hi"}],
            "messages[2].role: expected one of system, user, assistant, got 'bot'",
        ),
        ([{"role": "user", "content": 5}], "messages[0].content: expected str, got int"),
        ([{"role": "user", "content": None}], "messages[0].content: expected str, got NoneType"),
    ],
)
def test_bad_messages_give_exact_error_and_write_nothing(store, messages, error):
    with pytest.raises(ValueError) as caught:
        store.save_conversation(messages)
    assert str(caught.value) == error
    with pytest.raises(ValueError) as caught:
        share(store, messages)
    assert str(caught.value) == error
    assert store._read("SELECT count(*) FROM conversations")[0][0] == 0
    assert store._read("SELECT count(*) FROM shares")[0][0] == 0


def test_bad_settings_and_fields(store):
    with pytest.raises(ValueError, match=r"^settings: not JSON-serializable: Object of type set is not JSON serializable$"):
        store.save_conversation(MESSAGES, settings={"stop": {"a"}})
    with pytest.raises(ValueError, match=r"^settings: expected a dict, got list$"):
        share(store, settings=[1])
    with pytest.raises(ValueError, match=r"^messages: nothing to share, the conversation is empty$"):
        share(store, [])
    with pytest.raises(ValueError, match=r"^expires_in: expected a positive number of seconds or None, got -1$"):
        share(store, expires_in=-1)
    with pytest.raises(ValueError, match=r"^model: expected str, got NoneType$"):
        share(store, model=None)
    with pytest.raises(ValueError, match=r"^conversation_id: no saved conversation '"):
        share(store, conversation_id=new_id())


# --------------------------------------------------------------------------- shares


def test_share_ids_are_long_random_and_url_safe():
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    for share_id in ids:
        assert len(share_id) >= 22
        assert re.fullmatch(r"[A-Za-z0-9_-]+", share_id)
        assert len(base64.urlsafe_b64decode(share_id + "=" * (-len(share_id) % 4))) >= 16


def test_share_round_trip(store):
    ticket = share(store, adapter="lora-x", owner="alice")
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", ticket.id)
    assert ticket.secret and ticket.secret not in repr(ticket)
    got = store.get_share(ticket.id)
    assert got == SharedConversation(
        id=ticket.id, messages=MESSAGES, model="tiny-gpt", adapter="lora-x", settings=SETTINGS,
        created=ticket.created, expires=None,
    )
    # Only the hash of the revoke secret is stored.
    (stored_hash,) = store._read("SELECT secret_hash FROM shares WHERE id = ?", (ticket.id,))[0]
    assert ticket.secret not in stored_hash and len(stored_hash) == 64
    assert [s.id for s in store.list_shares("alice")] == [ticket.id]


def test_share_is_an_immutable_snapshot(store):
    messages = [dict(m) for m in MESSAGES[:2]]
    conversation_id = store.save_conversation(messages, owner="alice")
    ticket = share(store, messages, owner="alice", conversation_id=conversation_id)
    messages[1]["content"] = "edited in place"
    messages.append({"role": "assistant", "content": "later turn"})
    store.save_conversation(messages, conversation_id=conversation_id, owner="alice")
    store.get_share(ticket.id).messages.append({"role": "user", "content": "mutating a returned copy"})
    assert store.get_share(ticket.id).messages == MESSAGES[:2]
    # Deleting the source conversation keeps the snapshot.
    assert store.delete_conversation(conversation_id, owner="alice") is True
    assert store.get_share(ticket.id).messages == MESSAGES[:2]


def test_unknown_malformed_revoked_and_expired_shares_are_none(db_path):
    clock = FakeClock()
    with Store(db_path, clock=clock) as opened:
        assert opened.get_share(new_id()) is None
        for bad in ["", "short", "' OR '1'='1", "a" * 22, "A" * 21 + "!", "A" * 200, None, 123, b"x" * 22]:
            assert opened.get_share(bad) is None
        revoked = share(opened)
        assert opened.revoke_share(revoked.id, secret=revoked.secret) is True
        assert opened.get_share(revoked.id) is None
        expiring = share(opened, expires_in=60)
        assert expiring.expires == clock.now + 60
        clock.now += 59.9
        assert opened.get_share(expiring.id) is not None
        clock.now += 0.1
        assert opened.get_share(expiring.id) is None


def test_revoke_needs_the_right_secret_or_owner(store):
    anonymous = share(store)
    assert store.revoke_share(anonymous.id) is False
    assert store.revoke_share(anonymous.id, secret="wrong") is False
    assert store.revoke_share(anonymous.id, secret=anonymous.secret + "x") is False
    # An anonymous share has no owner, so no owner can revoke it.
    assert store.revoke_share(anonymous.id, owner="alice") is False
    assert store.get_share(anonymous.id) is not None
    assert store.revoke_share(anonymous.id, secret=anonymous.secret) is True
    assert store.revoke_share(anonymous.id, secret=anonymous.secret) is True  # idempotent

    owned = share(store, owner="alice")
    assert store.revoke_share(owned.id, owner="mallory") is False
    assert store.revoke_share(owned.id, secret=anonymous.secret) is False
    assert store.get_share(owned.id) is not None
    assert store.revoke_share(owned.id, owner="alice") is True
    assert store.get_share(owned.id) is None

    assert store.revoke_share(new_id(), secret="anything") is False
    assert store.revoke_share("not an id", secret="anything") is False


def test_everything_persists_across_reopen(db_path):
    with Store(db_path) as first:
        conversation_id = first.save_conversation(MESSAGES, owner="alice", model="tiny-gpt")
        kept, revoked = share(first), share(first)
        assert first.revoke_share(revoked.id, secret=revoked.secret)
    with Store(db_path) as second:  # the app restarted
        assert second.load_conversation(conversation_id).messages == MESSAGES
        assert second.get_share(kept.id).messages == MESSAGES
        assert second.get_share(revoked.id) is None
        assert second.revoke_share(kept.id, secret=kept.secret) is True
    with Store(db_path) as third:
        assert third.get_share(kept.id) is None


# --------------------------------------------------------------------------- concurrency


def test_concurrent_writes_from_8_threads_all_land(db_path):
    per_thread = 25
    shared_store = Store(db_path)
    second_store = Store(db_path)  # a second connection, as another worker process would have
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(number: int) -> None:
        target = shared_store if number % 2 else second_store
        try:
            start.wait()
            ids = []
            for turn in range(per_thread):
                messages = [{"role": "user", "content": f"thread {number} turn {turn}"}]
                ids.append(target.save_conversation(messages, owner=f"user{number}"))
                ids.append(share(target, messages).id)
            results[number] = ids
        except BaseException as error:  # surfaced below, with the thread's traceback
            errors.append(error)

    threads = [threading.Thread(target=work, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert shared_store._read("SELECT count(*) FROM conversations")[0][0] == 8 * per_thread
        assert shared_store._read("SELECT count(*) FROM shares")[0][0] == 8 * per_thread
        for number, ids in results.items():
            conversation = shared_store.load_conversation(ids[-2])
            assert conversation.messages[0]["content"] == f"thread {number} turn {per_thread - 1}"
            assert shared_store.get_share(ids[-1]).messages == conversation.messages
        assert len(results) == 8
    finally:
        shared_store.close()
        second_store.close()


# --------------------------------------------------------------------------- export


def test_export_json(store):
    ticket = share(store, adapter="lora-x")
    exported = json.loads(conversation_to_json(store.get_share(ticket.id)))
    assert exported["messages"] == MESSAGES
    assert exported["model"] == "tiny-gpt" and exported["adapter"] == "lora-x"
    assert exported["settings"] == SETTINGS
    assert exported["id"] == ticket.id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", exported["created"])


def test_export_json_from_dict():
    text = conversation_to_json({"messages": MESSAGES[1:3], "model": "m", "created": 0})
    assert text.startswith("{\n  ")
    assert json.loads(text) == {
        "created": "1970-01-01T00:00:00+00:00", "model": "m", "adapter": None, "settings": {},
        "messages": MESSAGES[1:3],
    }


def test_export_markdown_has_turns_in_order(store):
    conversation_id = store.save_conversation(MESSAGES, model="tiny-gpt", adapter="lora-x")
    markdown = conversation_to_markdown(store.load_conversation(conversation_id))
    lines = markdown.splitlines()
    assert lines[0] == "# Conversation"
    assert lines[2].startswith("**Model:** tiny-gpt + adapter lora-x · ")
    assert "> **System prompt:**\n> You are curious.\n> Ask one question at a time." in markdown
    positions = [
        markdown.index("**User:** Tell me about otters."),
        markdown.index("**Assistant:** Otters hold hands while sleeping. What made you think of otters?"),
        markdown.index("**User:** A documentary."),
    ]
    assert positions == sorted(positions)
    assert markdown.index("> You are curious.") < positions[0]


def test_export_rejects_bad_snapshot():
    with pytest.raises(ValueError, match=r"^messages\[0\]\.role: expected one of system, user, assistant, got 'bot'$"):
        conversation_to_markdown({"messages": [{"role": "bot", "content": "x"}]})
    with pytest.raises(ValueError, match=r"^snapshot\.messages: missing$"):
        conversation_to_json({"model": "m"})
    with pytest.raises(ValueError, match=r"^snapshot: expected a Conversation, SharedConversation or dict, got list$"):
        conversation_to_json([])


# --------------------------------------------------------------------------- limits (issue 18)


def test_share_and_conversation_size_caps_are_refused_with_a_clear_message(tmp_path):
    from convo.store import LimitError, Limits, Store

    limits = Limits(message_chars=100, conversation_chars=250, messages=5)
    with Store(tmp_path / "s.sqlite3", limits=limits) as store:
        big = [{"role": "user", "content": "x" * 101}]
        with pytest.raises(LimitError, match=r"^messages\[0\] is 101 characters long, over the limit of 100 characters per message$"):
            store.create_share(big, model="m", adapter=None, settings={})
        with pytest.raises(LimitError, match="per message"):
            store.save_conversation(big)
        long = [{"role": "user", "content": "x" * 90}] * 3
        with pytest.raises(LimitError, match=r"^this share is 270 characters long, over the limit of 250 characters$"):
            store.create_share(long, model="m", adapter=None, settings={})
        with pytest.raises(LimitError, match=r"^this conversation has 6 messages, over the limit of 5$"):
            store.save_conversation([{"role": "user", "content": "hi"}] * 6)
        assert store._read("SELECT COUNT(*) FROM shares")[0][0] == 0
        assert store._read("SELECT COUNT(*) FROM conversations")[0][0] == 0


def test_share_creation_is_rate_limited_per_creator(tmp_path):
    from convo.store import LimitError, Limits, Store

    now = [1000.0]
    with Store(tmp_path / "s.sqlite3", limits=Limits(shares_per_hour=3), clock=lambda: now[0]) as store:
        hi = [{"role": "user", "content": "hi"}]
        for _ in range(3):
            store.create_share(hi, model="m", adapter=None, settings={}, creator="10.0.0.1")
        with pytest.raises(LimitError, match=r"^too many shares: 3 an hour at most; try again in 60 min 1 s$"):
            store.create_share(hi, model="m", adapter=None, settings={}, creator="10.0.0.1")
        store.create_share(hi, model="m", adapter=None, settings={}, creator="10.0.0.2")  # another creator
        now[0] += 3601
        store.create_share(hi, model="m", adapter=None, settings={}, creator="10.0.0.1")  # an hour later


def test_share_rate_limit_survives_a_restart_and_keeps_no_address(tmp_path):
    from convo.store import LimitError, Limits, Store

    now, path, hi = [1000.0], tmp_path / "s.sqlite3", [{"role": "user", "content": "hi"}]
    limits = Limits(shares_per_hour=3)
    with Store(path, limits=limits, clock=lambda: now[0]) as store:
        for _ in range(3):
            store.create_share(hi, model="m", adapter=None, settings={}, creator="10.0.0.1")
    now[0] += 600
    with Store(path, limits=limits, clock=lambda: now[0]) as restarted:  # a new process on the same file
        with pytest.raises(LimitError, match=r"^too many shares: 3 an hour at most; try again in 50 min 1 s$"):
            restarted.create_share(hi, model="m", adapter=None, settings={}, creator="10.0.0.1")
        assert restarted._read("SELECT COUNT(*) FROM shares")[0][0] == 3
        dump = "\n".join(restarted._conn.iterdump())
        assert "10.0.0.1" not in dump  # only a hash of the address is kept, and only for an hour
        now[0] += 3001
        restarted.create_share(hi, model="m", adapter=None, settings={}, creator="10.0.0.1")
        assert restarted._read("SELECT COUNT(*) FROM share_events")[0][0] == 1  # older events pruned


def test_disk_guard_refuses_writes_when_the_data_dir_is_nearly_full(tmp_path):
    from convo.store import LimitError, Limits, Store

    with Store(tmp_path / "s.sqlite3", limits=Limits(min_free_bytes=10**18)) as store:
        with pytest.raises(LimitError, match=r"^the server's disk is nearly full \(.* MB free, .* MB kept free\)"):
            store.save_conversation([{"role": "user", "content": "hi"}])
        with pytest.raises(LimitError, match="disk is nearly full"):
            store.create_share([{"role": "user", "content": "hi"}], model="m", adapter=None, settings={})


def test_turn_saver_saves_the_message_at_once_and_the_reply_on_a_timer(tmp_path):
    from convo.chat import TurnSaver
    from convo.store import Limits, Store

    now = [0.0]
    with Store(tmp_path / "s.sqlite3", limits=Limits(message_chars=50)) as store:
        history = [{"role": "user", "content": "Tell me about cats."}]
        saver = TurnSaver(store, history, model="m", every_s=2.0, clock=lambda: now[0])
        cid = saver.start()
        assert store.load_conversation(cid).messages == history
        now[0] = 1.0
        saver.partial("Cats")
        assert store.load_conversation(cid).messages == history  # not yet: under 2 s since the last save
        now[0] = 2.5
        saver.partial("Cats purr")
        assert store.load_conversation(cid).messages[-1] == {"role": "assistant", "content": "Cats purr"}
        # until it finishes, the saved conversation says its reply is being written (a reply the page
        # stopped reading, or the server stopped writing, reopens marked cut off)
        from convo.chat import cut_off

        assert cut_off(store.load_conversation(cid).settings)
        saver.partial("Cats purr and", now=True)  # the page went away: what was written is kept at once
        assert store.load_conversation(cid).messages[-1]["content"] == "Cats purr and"
        assert saver.finish("Cats purr and sleep.") == cid
        assert store.load_conversation(cid).messages[-1]["content"] == "Cats purr and sleep."
        assert not cut_off(store.load_conversation(cid).settings)
        saver.finish("x" * 51)  # over the store's limit: the chat goes on, the problem is reported once
        assert saver.take_problem().startswith("This conversation is no longer saved: messages[1] is 51 characters")
        assert saver.take_problem() is None
