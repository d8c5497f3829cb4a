"""The curious-model loop in Chromium: per-user memory across conversations and browsers (forget
deletes the rows), and the sentiment part of each question's score in the Questions tab."""
import sqlite3

import pytest
from test_browser import COLUMNS_PAST_THE_EDGE, SPLIT_WORDS, SQUEEZED, long_replies, open_app, send, table_rows, wait_reply

from convo.ui.questions import COLUMNS

pytestmark = pytest.mark.browser
PASSAGE = ("Mount Tambora is a volcano on the island of Sumbawa in Indonesia. It erupted in 1815 in the largest "
           "eruption in recorded history. The ash caused the Year Without a Summer in Europe, a sad and terrible "
           "time of hunger. Farmers in New England lost their crops.")


@pytest.fixture(scope="module")
def app(launch_shared, tiny_causal):
    # the tiny random model writes only babble, which the follow-ups' likelihood floor drops: off here
    return launch_shared(model=tiny_causal, CONVO_FOLLOW_UP_FLOOR="-inf")


def memory_rows(app):
    with sqlite3.connect(app.data_dir / "convo.sqlite3") as conn:
        return conn.execute("SELECT owner, fact FROM memories").fetchall()


def suggestions(page) -> list[str]:
    return [b.inner_text() for b in page.locator(".suggestion").all() if b.is_visible()]


def wait_suggestions(page, contains=""):
    """The reply's event ends with its suggestions (the tiny model always writes some '?' text). The
    reply may still be streaming when wait_reply returns (up to max_new_tokens of babble): a loaded
    machine needs minutes."""
    page.wait_for_function("""(text) => [...document.querySelectorAll('.suggestion')]
        .some(b => b.offsetParent !== null && b.innerText.includes(text))""", arg=contains, timeout=240_000)
    return suggestions(page)


def open_memory(page) -> str:
    page.get_by_text("What convo remembers about you").click()
    page.locator("#memory-refresh").click()
    page.wait_for_timeout(800)
    return page.locator("#memory-list").inner_text()



def open_with_memory_id(chromium, url):
    """The page, once its load event has given the browser its memory id (a message sent before that
    has no owner to remember for: a CI run on a loaded machine sent it first)."""
    context, page = open_app(chromium, url)
    page.wait_for_function("() => (localStorage.getItem('convo-memory-id') || '').length > 2", timeout=60_000)
    return context, page


def test_memory_follows_its_user_only_and_forget_deletes(chromium, app):
    alice_ctx, alice = open_with_memory_id(chromium, app.url)
    send(alice, "I just got back from hiking in Norway")
    wait_reply(alice)
    assert not any("Norway" in q for q in wait_suggestions(alice))  # said in this conversation: not offered back
    assert [fact for _, fact in memory_rows(app)] == ["You just got back from hiking in Norway"]

    alice.locator("#clear").click()  # a later conversation
    send(alice, "Hello again")
    wait_reply(alice)
    assert wait_suggestions(alice, "Norway")[0] == "How was the hiking in Norway?"
    assert "remembered" in alice.locator("#suggestion-scores").inner_text()

    bob_ctx, bob = open_with_memory_id(chromium, app.url)
    bob.get_by_role("button", name="Settings ▼").click()
    bob.locator("#chat-sentiment input").check()  # and bob weighs feeling: his suggestions show that part
    send(bob, "Hello")
    wait_reply(bob)
    assert not any("Norway" in q for q in wait_suggestions(bob))
    bob.wait_for_selector("#suggestion-scores", state="visible", timeout=30_000)
    assert "sentiment" in bob.locator("#suggestion-scores").inner_text()
    assert open_memory(bob).strip() == "convo remembers nothing about you."
    assert "Norway" not in bob.content()

    assert "You just got back from hiking in Norway" in open_memory(alice)
    # "Forget everything" asks first, naming how many facts go; Keep keeps them, Yes deletes them
    alice.locator("#memory-forget-all").click()
    alice.wait_for_selector("#memory-confirm", state="visible", timeout=30_000)
    assert "Forget the 1 fact convo remembers about you?" in alice.locator("#memory-confirm-text").inner_text()
    alice.locator("#memory-forget-all-keep").click()
    alice.wait_for_selector("#memory-confirm", state="hidden", timeout=30_000)
    assert [fact for _, fact in memory_rows(app)] == ["You just got back from hiking in Norway"]
    alice.locator("#memory-forget-all").click()
    alice.wait_for_selector("#memory-confirm", state="visible", timeout=30_000)
    alice.locator("#memory-refresh").click()  # the list is counted again: the question folds away
    alice.wait_for_selector("#memory-confirm", state="hidden", timeout=30_000)
    alice.locator("#memory-forget-all").click()
    alice.locator("#memory-forget-all-yes").click()
    alice.wait_for_function("() => document.querySelector('#memory-list').innerText.includes('nothing')", timeout=30_000)
    alice.wait_for_selector("#memory-confirm", state="hidden", timeout=30_000)
    assert memory_rows(app) == []
    alice_ctx.close()
    bob_ctx.close()


def saved_messages(app) -> list[list[str]]:
    import json

    with sqlite3.connect(app.data_dir / "convo.sqlite3") as conn:
        rows = conn.execute("SELECT messages FROM conversations ORDER BY created").fetchall()
    return [[m["content"] for m in json.loads(messages)] for (messages,) in rows]


def test_a_chosen_suggestion_and_undo_are_saved_for_a_reload(chromium, app):
    """A chip's question ends convo's reply, and Undo drops an exchange, without a new reply: both
    are saved at once, so a reload reopens the chat as it was shown (a walkthrough lost the chip's
    question on a reload, and Undo's exchange came back)."""
    context, page = open_app(chromium, app.url)
    first = "I started learning the violin last month."
    send(page, first)
    wait_reply(page)
    question = wait_suggestions(page)[0].strip()
    page.locator(".suggestion", has_text=question).first.click()
    page.wait_for_function("q => document.querySelector('#chatbot').innerText.includes(q)", arg=question,
                           timeout=10_000)
    mine = [c for c in saved_messages(app) if c and c[0] == first]
    assert len(mine) == 1 and mine[0][-1].endswith(question), mine
    page.reload()
    page.wait_for_function("q => document.querySelector('#chatbot')?.innerText.includes(q)", arg=question,
                           timeout=30_000)
    page.locator("#undo").click()
    page.wait_for_function("t => !document.querySelector('#chatbot').innerText.includes(t)", arg=first,
                           timeout=10_000)
    assert [c for c in saved_messages(app) if c and c[0] == first] == []
    page.reload()
    page.wait_for_selector("#chatbot", timeout=30_000)
    page.wait_for_timeout(2000)
    assert first not in page.locator("#chatbot").inner_text()
    context.close()


def test_questions_tab_shows_the_sentiment_part(chromium, app):
    context, page = open_app(chromium, app.url)
    page.get_by_role("tab", name="Questions").click()
    page.locator("#questions-passage textarea").fill(PASSAGE)
    page.locator("#questions-sentiment input").check()
    page.locator("#questions-generate").click()
    page.wait_for_function("() => document.querySelector('#questions-status').innerText.includes('question')",
                           timeout=120_000)
    head = page.evaluate("() => [...document.querySelectorAll('#questions-table thead th')].map(th => th.innerText.trim())")
    column = head.index("Sentiment")
    rows = [row.split("\n") for row in table_rows(page, "#questions-table")]
    assert rows and all(len(row) == len(COLUMNS) for row in rows), rows
    assert all(0 <= float(row[column]) <= 1 for row in rows)  # a number in every row, not blank
    # every column is in view (Sentiment, Made by and Sentence were past the right edge)
    assert page.evaluate(COLUMNS_PAST_THE_EDGE, "#questions-table") == []
    # on a phone the columns keep readable widths and the table scrolls sideways: squeezed to
    # percentages of 330 pixels, "0.76" and "model" stood one character a line
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(500)
    assert page.evaluate(SPLIT_WORDS, "#questions-table th, #questions-table [role=gridcell]") == []
    squeezed = page.evaluate(SQUEEZED, "#questions-table")
    assert squeezed["narrowest"] >= 34 and squeezed["scrolls"], squeezed
    context.close()


def test_the_last_replys_suggestions_hide_while_the_next_reply_streams(chromium, launch, slow_tiny):
    """The chips live in a gr.State whose change event draws them (a streamed update then carries no
    component updates): the reply's first update empties it, and the page hides the chips while that
    reply still streams, not only once it is done. The reply streams for seconds (the 24-layer tiny
    model): the 2-layer model's 300 tokens took 0.2 s, and in CI runs ended before the State's change
    event had come back from the app."""
    app = launch(model=slow_tiny, CONVO_FOLLOW_UP_FLOOR="-inf")
    context, page = open_with_memory_id(chromium, app.url)
    long_replies(page)
    send(page, "Hello")
    wait_reply(page)
    assert wait_suggestions(page)
    # every change of the page is looked at, not only at animation frames (a CI run polled for 60 s and
    # never saw the two together)
    page.evaluate("""() => { window.hiddenWhileReplying = false;
        new MutationObserver(() => {
            if (document.querySelector('#chat-status').innerText.startsWith('Replying')
                && ![...document.querySelectorAll('.suggestion')].some(b => b.offsetParent !== null))
                window.hiddenWhileReplying = true;
        }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true}); }""")
    send(page, "Tell me more")
    page.wait_for_function("() => window.hiddenWhileReplying", timeout=60_000)
    assert wait_suggestions(page)  # and the new reply's come when it is done
    context.close()
