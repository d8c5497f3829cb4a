"""Per-user memory: fact extraction, isolation between users, forgetting deletes the rows, and
the browser flow (a later conversation's follow-up uses the fact; another user never sees it)."""
import sqlite3

import pytest

from convo import chat, memory
from convo.store import Store, new_id


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "convo.sqlite3") as s:
        yield s


def rows(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT owner, fact, question FROM memories ORDER BY id").fetchall()


@pytest.mark.parametrize("message, fact, question", [
    ("I just got back from hiking in Norway", "You just got back from hiking in Norway", "How was the hiking in Norway?"),
    ("Well, I got back from my trip to Rome.", "You just got back from your trip to Rome", "How was your trip to Rome?"),
    ("I'm a nurse and I work nights", "You are a nurse", "What do you enjoy most about being a nurse?"),
    ("I really love jazz", "You love jazz", "What do you love most about jazz?"),
    ("I live in Oslo", "You live in Oslo", "How do you like living in Oslo?"),
    ("My favourite food is sushi.", "Your favourite food is sushi", "What makes sushi your favourite food?"),
    ("my name is Ann", "Your name is Ann", None),
    # what a user does, is doing and has (a walkthrough's "I grow tomatoes on my balcony" was not kept)
    ("My name is Dana. I grow tomatoes on my balcony.", "Your name is Dana", None),
    ("I grow tomatoes on my balcony.", "You grow tomatoes on your balcony",
     "How did you get into growing tomatoes on your balcony?"),
    ("I also play the cello in a band", "You play the cello in a band", "How did you get into playing the cello in a band?"),
    ("I run a small bakery", "You run a small bakery", "How did you get into running a small bakery?"),
    ("I'm learning Spanish", "You are learning Spanish", "How is learning Spanish going?"),
    ("I am training for a marathon!", "You are training for a marathon", "How is training for a marathon going?"),
    ("I have a dog named Rex", "You have a dog named Rex", "How is your dog doing?"),
    ("We moved, and I have two little kids", "You have two little kids", "How are your kids doing?"),
])
def test_first_person_statements_become_facts(message, fact, question):
    assert memory.extract_facts(message)[0] == memory.Fact(fact, question)


@pytest.mark.parametrize("message", ["Do I like tea?", "I am not sure", "I like it", "I'd like a summary",
                                     "The author got back from Norway", "What is my name?", "I run to the shop",
                                     "I play it by ear", "I have a question about rain", "I'm writing to ask",
                                     "Am I learning anything?", "I have to go"])
def test_no_fact_in_questions_or_vague_statements(message):
    assert memory.extract_facts(message) == []


def test_owner_keys():
    browser = new_id()
    assert memory.owner_key("alice", browser) == "hf:alice"  # signed in: the account, in every browser
    assert memory.owner_key(None, browser) == f"browser:{browser}"
    assert memory.owner_key(None, "") is None and memory.owner_key(None, "../x") is None


def test_memory_is_per_user_and_forget_deletes_rows(store):
    alice, bob, anon = memory.owner_key("alice", None), memory.owner_key("bob", None), memory.owner_key(None, new_id())
    memory.remember(store, alice, "I just got back from hiking in Norway. I love jazz.")
    memory.remember(store, bob, "I live in Oslo")
    memory.remember(store, alice, "I just got back from hiking in Norway")  # the same fact once
    assert [m.fact for m in store.memories(alice)] == ["You love jazz", "You just got back from hiking in Norway"]
    assert [m.fact for m in store.memories(bob)] == ["You live in Oslo"]
    assert store.memories(anon) == []
    later = [{"role": "user", "content": "Hello again"}]
    assert memory.follow_ups(store, alice, later, limit=2) == ["What do you love most about jazz?",
                                                               "How was the hiking in Norway?"]
    assert memory.follow_ups(store, bob, later) == ["How do you like living in Oslo?"]
    # a fact stated in this very conversation is not offered back
    assert memory.follow_ups(store, alice, [{"role": "user", "content": "I love jazz"}]) == ["How was the hiking in Norway?"]

    norway = next(m for m in store.memories(alice) if "Norway" in m.fact)
    assert store.forget(bob, norway.id) == 0  # not bob's to delete
    assert store.forget(alice, norway.id) == 1
    assert ("hf:alice", "You just got back from hiking in Norway", "How was the hiking in Norway?") not in rows(store.path)
    assert store.forget(alice) == 1
    assert rows(store.path) == [("hf:bob", "You live in Oslo", "How do you like living in Oslo?")]


def test_remembered_question_comes_first(monkeypatch):
    monkeypatch.setattr(chat, "generate_batch", lambda lm, prompts, sampling, **kw: ["What is your favourite song?"] * len(prompts))
    monkeypatch.setattr(chat, "render_prompt", lambda lm, messages: "prompt")
    monkeypatch.setattr(chat, "continuation_logprobs", lambda lm, prompt, texts: [-1.0] * len(texts))
    history = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}]
    got = chat.follow_up_questions(None, history, n=2, remembered=["How was the hiking in Norway?"])
    assert [f.text for f in got] == ["How was the hiking in Norway?", "What is your favourite song?"]
    assert got[0].parts == {"memory": 1.0}
    asked = chat.follow_up_questions(None, history, n=2, remembered=["How was the hiking in Norway?"],
                                     asked=["How was the hiking in Norway?"])
    assert [f.text for f in asked] == ["What is your favourite song?"]


def test_memory_is_opt_in_on_a_space(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert memory.enabled_by_default()
    monkeypatch.setenv("SPACE_ID", "someone/convo")
    assert not memory.enabled_by_default()


def test_panel_lists_and_forgets_one_fact(store, monkeypatch):
    from convo.ui import memory_panel as tab

    monkeypatch.setattr(tab, "get_store", lambda: store)
    browser = new_id()
    owner = memory.owner_key(None, browser)
    memory.remember(store, owner, "I love jazz. I live in Oslo.")
    memory.remember(store, memory.owner_key(None, new_id()), "I love tea")  # another browser
    text, choices = tab.show_memory(browser)
    assert text == "- You live in Oslo\n- You love jazz"
    jazz = dict(choices["choices"])["You love jazz"]
    text, _ = tab.forget_memory(jazz, browser)
    assert text == "- You live in Oslo"
    assert [fact for _, fact, _ in rows(store.path)] == ["You live in Oslo", "You love tea"]
    assert tab.ensure_memory_id(browser) == browser and tab.ensure_memory_id("") != ""


def test_forget_everything_asks_first(store, monkeypatch):
    """"Forget everything" deleted every fact on one click: it now asks, naming how many, and only its
    Yes deletes (this browser's facts, not another's)."""
    from convo.ui import memory_panel as tab

    monkeypatch.setattr(tab, "get_store", lambda: store)
    browser, other = new_id(), new_id()
    memory.remember(store, memory.owner_key(None, browser), "I love jazz. I live in Oslo.")
    memory.remember(store, memory.owner_key(None, other), "I love tea")
    row, question = tab.ask_forget_all(browser)
    assert row == {"__type__": "update", "visible": True}
    assert question == "Forget all 2 facts convo remembers about you? This cannot be undone."
    assert len(rows(store.path)) == 3  # asking deletes nothing
    text, choices, row = tab.forget_all_memory(browser)
    assert text == "convo remembers nothing about you." and choices["choices"] == [] and row["visible"] is False
    assert [fact for _, fact, _ in rows(store.path)] == ["You love tea"]
    row, question = tab.ask_forget_all(browser)  # nothing left: no question (and a toast says so)
    assert row["visible"] is False and question == ""
