"""The app in Chromium (Playwright): chat, suggestions, share links across restarts, isolation."""
import json
import os
import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
BOT = "#chatbot [data-testid='bot']"
USER = "#chatbot [data-testid='user']"


def send(page, text):
    page.locator("#chat-input textarea").fill(text)
    page.locator("#send").click()


def wait_reply(page, count=1, timeout=60_000):
    page.wait_for_function(
        """([sel, n]) => { const b = document.querySelectorAll(sel); return b.length >= n && b[n-1].innerText.trim().length > 0; }""",
        arg=[BOT, count], timeout=timeout)
    # the reply is complete once the Send event has finished (no pending progress in the chatbot)
    page.wait_for_timeout(500)
    return page.locator(BOT).nth(count - 1).inner_text()


def reply_loop_over(page, timeout=60_000):
    """Wait until the reply loop has ended: the status line no longer says Replying or Thinking (it
    is then empty, or says the reply was stopped or cut)."""
    page.wait_for_function("() => !/Replying|Thinking/.test(document.querySelector('#chat-status').innerText)",
                           timeout=timeout)


def exchange(page, text) -> list:
    """Send ``text``, wait for the reply loop to end (its follow-ups included); the chat's turns then."""
    send(page, text)
    wait_reply(page)
    reply_loop_over(page)
    return chat_turns(page)


def open_app(browser, url):
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#chat-input textarea", timeout=60_000)
    return context, page


def table_rows(page, selector) -> list[str]:
    """The text of every row of a gr.Dataframe, by its first cell. The table renders only the rows in
    view (a virtual table of at most ``max_height``), so scroll through it and collect what shows."""
    return page.evaluate("""async (sel) => {
        const root = document.querySelector(sel);
        const view = root.querySelector('.virtual-table-viewport') || root;
        const rows = new Map();
        for (let top = 0; ; top += Math.max(40, view.clientHeight / 3)) {
            view.scrollTop = top;
            await new Promise(r => setTimeout(r, 120));
            for (const row of root.querySelectorAll('.virtual-row')) {
                const first = row.querySelector('.first-column');
                if (first && first.innerText.trim()) rows.set(first.innerText.trim(), row.innerText);
            }
            if (top >= view.scrollHeight) break;
        }
        view.scrollTop = 0;
        return [...rows.values()];
    }""", selector)


@pytest.fixture(scope="module")
def tiny_app(launch_shared, tiny_causal):
    return launch_shared(model=tiny_causal)


def test_chat_streams_a_reply(chromium, tiny_app):
    context, page = open_app(chromium, tiny_app.url)
    send(page, "Hello from the browser")
    assert wait_reply(page).strip()
    assert page.locator(USER).first.inner_text().strip() == "Hello from the browser"
    context.close()


def test_a_reply_cut_at_the_token_limit_says_so(chromium, tiny_app):
    """A reply that used all of Max new tokens ends mid-sentence: the status line says it was cut
    (it went blank, so the cut reply looked finished; a walkthrough found one ending "a good camera,")."""
    context, page = open_app(chromium, tiny_app.url)
    page.get_by_role("button", name="Settings ▼").click()
    set_number(page, "#max-new-tokens input[type=number]", 17)
    set_number(page, "#temperature input[type=number]", 0)  # greedy: the same 17 tokens every run
    send(page, "Hello from the browser")
    wait_reply(page)
    reply_loop_over(page)
    assert page.locator("#chat-status").inner_text().strip() == "Reply cut at the token limit (Max new tokens, in Settings)."
    context.close()


COLUMNS_PAST_THE_EDGE = """(sel) => {
    const edge = document.querySelector(sel).getBoundingClientRect().right;
    return [...document.querySelectorAll(sel + ' thead th')]
        .filter(th => th.getBoundingClientRect().right > edge + 1).map(th => th.innerText.trim());
}"""
"""The header cells of a table that lie past its right edge (to be scrolled to)."""


def saved_conversations(data_dir: Path) -> list[list[str]]:
    """The text of every saved conversation's messages, oldest first."""
    import sqlite3

    with sqlite3.connect(data_dir / "convo.sqlite3") as db:
        rows = db.execute("SELECT messages FROM conversations ORDER BY created").fetchall()
    return [[m["content"] for m in json.loads(messages)] for (messages,) in rows]


def test_the_chat_boxs_trash_icon_starts_a_new_conversation(chromium, tiny_app):
    """The chat box's own trash icon does what Clear does: the next message starts a new saved
    conversation (it was saved over the cleared one, whose messages were lost) and the share link goes."""
    context, page = open_app(chromium, tiny_app.url)
    first = f"Trash test {time.time_ns()}: tell me about lighthouses."
    send(page, first)
    wait_reply(page)
    # the reply loop is over (its follow-ups included: in a CI run its last update, after the click,
    # brought the first conversation back; test_clear_mid_reply_starts_over covers that case)
    reply_loop_over(page)
    assert "share=" in share_link(page)
    page.locator("#chatbot").get_by_role("button", name="Clear").click()
    page.wait_for_function("s => document.querySelectorAll(s).length === 0", arg=BOT, timeout=10_000)
    assert page.locator("#share-link textarea, #share-link input").first.input_value() == ""
    second = f"Trash test {time.time_ns()}: and about windmills."
    send(page, second)
    wait_reply(page)
    page.wait_for_timeout(1500)  # the finished reply is saved when the stream ends
    mine = [c for c in saved_conversations(tiny_app.data_dir) if c and c[0] in (first, second)]
    assert [c[0] for c in mine] == [first, second], mine
    assert len(mine[0]) == 2 and len(mine[1]) == 2, mine  # each its message and its reply
    context.close()


def test_a_reload_reopens_the_conversation_and_the_next_message_continues_it(chromium, tiny_app):
    """A reload showed an empty chat, so the conversation was out of reach (a walkthrough lost one).
    Now the browser keeps its conversation's id: a reload reopens it, the next message continues the
    same saved conversation, another browser sees none of it, and after Clear a reload starts empty."""
    context, page = open_app(chromium, tiny_app.url)
    first = f"Reload test {time.time_ns()}: tell me about kites."
    before = exchange(page, first)
    page.reload()
    page.wait_for_function("t => document.querySelector('#chatbot')?.innerText.includes(t)", arg=first, timeout=30_000)
    assert chat_turns(page) == before and [role for role, _ in before] == ["user", "assistant"]
    send(page, "And in winter?")
    wait_reply(page, count=2)
    reply_loop_over(page)
    page.wait_for_timeout(1500)  # the finished reply is saved when the stream ends
    mine = [c for c in saved_conversations(tiny_app.data_dir) if c and c[0] == first]
    assert len(mine) == 1 and len(mine[0]) == 4 and mine[0][2] == "And in winter?", mine
    other, stranger = open_app(chromium, tiny_app.url)  # another browser: its own empty chat
    stranger.wait_for_timeout(2000)
    assert chat_turns(stranger) == []
    other.close()
    page.locator("#clear").click()
    page.wait_for_function("s => document.querySelectorAll(s).length === 0", arg=BOT, timeout=10_000)
    page.wait_for_timeout(500)
    page.reload()
    page.wait_for_selector("#chatbot", timeout=30_000)
    page.wait_for_timeout(2000)
    assert chat_turns(page) == []
    context.close()


def test_an_empty_send_changes_nothing_and_a_double_click_sends_once(chromium, tiny_app):
    """Send (or Enter) with the box empty emptied the chat, and the next message was saved over the
    conversation, whose turns were lost; a double-click on Send sent the message twice (two replies)."""
    context, page = open_app(chromium, tiny_app.url)
    first = f"Empty send test {time.time_ns()}: tell me about owls."
    before = exchange(page, first)
    page.locator("#chat-input textarea").fill("")
    page.locator("#send").click()
    page.wait_for_timeout(1500)
    assert chat_turns(page) == before
    page.locator("#chat-input textarea").press("Enter")
    page.wait_for_timeout(1500)
    assert chat_turns(page) == before
    page.locator("#chat-input textarea").fill("And where do they sleep?")
    page.locator("#send").dblclick()
    wait_reply(page, count=2)
    reply_loop_over(page)
    page.wait_for_timeout(1500)  # the finished reply is saved when the stream ends
    turns = chat_turns(page)
    assert [role for role, _ in turns] == ["user", "assistant"] * 2, turns
    assert turns[:2] == before and turns[2] == ["user", "And where do they sleep?"], turns
    mine = [c for c in saved_conversations(tiny_app.data_dir) if c and c[0] == first]
    assert len(mine) == 1 and len(mine[0]) == 4 and mine[0][2] == "And where do they sleep?", mine
    page.screenshot(path=str(tiny_app.data_dir.parent / "empty-send.png"), full_page=True)
    context.close()


def test_clear_mid_reply_starts_over(chromium, launch, slow_tiny):
    """The trash icon (or Clear) while a reply streams: the reply stops, the cleared conversation does
    not come back with the loop's next update, and the next message starts a new saved conversation."""
    app, context, page = streaming(chromium, launch(model=slow_tiny), "first: please tell me a very long story.")
    page.locator("#chatbot").get_by_role("button", name="Clear").click()
    page.wait_for_timeout(2000)  # the stream's later updates (before the fix they showed it all again)
    assert page.locator(BOT).count() == 0 and page.locator(USER).count() == 0
    send(page, "second: hello again.")
    wait_reply(page)
    page.wait_for_function("() => !/Replying|Thinking/.test(document.querySelector('#chat-status').innerText)",
                           timeout=60_000)
    assert [role for role, _ in chat_turns(page)] == ["user", "assistant"]
    assert chat_turns(page)[0][1] == "second: hello again."
    assert [c[0] for c in saved_conversations(app.data_dir)] == ["first: please tell me a very long story.",
                                                                 "second: hello again."]
    context.close()


def test_two_browsers_never_see_each_others_messages(chromium, tiny_app):
    (ca, a), (cb, b) = open_app(chromium, tiny_app.url), open_app(chromium, tiny_app.url)
    # secrets no random model writes by chance (the tiny model once wrote "Idsbobo")
    alice, bob = "Xq7ALICEsecret", "Zk4BOBsecret"
    send(a, alice)
    send(b, bob)
    wait_reply(a)
    wait_reply(b)
    assert alice in a.locator("#chatbot").inner_text() and bob in b.locator("#chatbot").inner_text()
    assert bob not in a.locator("#chatbot").inner_text()
    assert alice not in b.locator("#chatbot").inner_text()
    ca.close()
    cb.close()


def chat_turns(page) -> list[tuple[str, str]]:
    """The chat's messages in order, as (role, text)."""
    return page.evaluate("""([u, b]) => [...document.querySelectorAll(u + ', ' + b)].map(
        el => [el.matches(u) ? 'user' : 'assistant', el.innerText.trim()])""", [USER, BOT])


def test_a_reload_keeps_the_conversations_settings_and_the_memory_switch(chromium, tiny_app):
    """A reload reopened the conversation with the default Settings: its next reply, export and share
    link then named a system prompt and sampling it was never held with. And the memory switch, turned
    off, was on again after a reload, so facts were kept again without a word."""
    context, page = open_app(chromium, tiny_app.url)
    page.get_by_role("button", name="Settings ▼").click()
    page.locator("#system-prompt textarea").fill("You are a pirate. Answer in one line.")
    set_number(page, "#temperature input[type=number]", 0)
    set_number(page, "#max-new-tokens input[type=number]", 40)
    page.locator("#memory-on input").uncheck()
    page.wait_for_timeout(500)
    exchange(page, f"Settings test {time.time_ns()}: ahoy?")
    page.wait_for_timeout(1000)
    page.reload()
    page.wait_for_function("() => document.querySelectorAll(\"#chatbot [data-testid='bot']\").length === 1",
                           timeout=30_000)
    page.get_by_role("button", name="Settings ▼").click()
    page.wait_for_function("() => document.querySelector('#system-prompt textarea')?.value.startsWith('You are a pirate')",
                           timeout=30_000)
    assert page.locator("#temperature input[type=number]").input_value() == "0"
    assert page.locator("#max-new-tokens input[type=number]").input_value() == "40"
    assert not page.locator("#memory-on input").is_checked()
    context.close()


def long_replies(page, tokens: int = 600):
    """Open the chat's settings and ask for replies of up to ``tokens`` tokens (with the 24-layer tiny
    model, 600 stream for about 3 s)."""
    page.get_by_role("button", name="Settings ▼").click()
    box = page.locator("#max-new-tokens input[type=number]")
    box.fill(str(tokens))
    box.press("Tab")


def streaming(chromium, app, text: str):
    """A page of ``app`` (the 24-layer tiny model) whose reply to ``text`` is streaming: its first
    piece shows, and about 3 s of it are still to come. Returns (app, context, page)."""
    context, page = open_app(chromium, app.url)
    long_replies(page)
    send(page, text)
    page.wait_for_function("(b) => (document.querySelector(b)?.innerText || '').trim().length > 0", arg=BOT,
                           timeout=60_000)
    return app, context, page


def test_stop_ends_the_reply_and_says_so_and_share_waits_for_it(chromium, launch, slow_tiny):
    """Stop cuts the streaming reply, and the status line says the reply was stopped (it went blank,
    so a cut reply looked finished). Share pressed while a reply is being written shares nothing and
    says to wait (a link kept the half-written reply for good); once the reply is over, the link holds
    all of it."""
    app, context, page = streaming(chromium, launch(model=slow_tiny), "Please tell me a very long story.")
    page.locator("#stop").click()
    page.wait_for_function("() => /stopped/i.test(document.querySelector('#chat-status').innerText)", timeout=30_000)
    cut = page.locator(BOT).first.inner_text()
    page.wait_for_timeout(1500)
    assert page.locator(BOT).first.inner_text() == cut and cut.strip()  # nothing more arrives
    assert page.locator("#chat-status").inner_text().strip() == "Reply stopped."
    assert not page.locator("#suggestion-0").is_visible()
    # Share pressed at once after Send: the reply (600 tokens, seconds on this model) is being written
    page.get_by_text("Share and export").click()
    send(page, "And another very long story, please.")
    page.locator("#share").click()
    page.wait_for_selector(".toast-body", timeout=30_000)
    assert "A reply is still being written: share the conversation once it ends" in page.locator(
        ".toast-body").first.inner_text()
    assert page.locator("#share-link textarea, #share-link input").first.input_value() == ""
    wait_reply(page, count=2)
    reply_loop_over(page)
    whole = page.locator(BOT).nth(1).inner_text()
    page.locator("#share").click()
    page.wait_for_function("() => document.querySelector('#share-link textarea, #share-link input').value.includes('share=')",
                           timeout=30_000)
    other, view = shared_messages(chromium, page.locator("#share-link textarea, #share-link input").first.input_value())
    shared = view.locator("#share-chatbot [data-testid='bot']")
    assert (shared.count(), shared.first.inner_text(), shared.nth(1).inner_text()) == (2, cut, whole)
    other.close()
    context.close()


def test_a_reload_mid_reply_reopens_the_cut_reply_and_says_so(chromium, launch, slow_tiny):
    """A reload while a reply streamed reopened it cut mid-sentence with nothing said (it looked finished).
    Now the reopened chat says the reply was cut off, and Regenerate writes it again."""
    app, context, page = streaming(chromium, launch(model=slow_tiny), "Please tell me a very long story.")
    page.wait_for_timeout(700)
    page.reload()
    page.wait_for_function("() => /cut off/.test(document.querySelector('#chat-status')?.innerText || '')",
                           timeout=30_000)
    assert "Regenerate writes it again" in page.locator("#chat-status").inner_text()
    [(_, cut)] = [turn for turn in chat_turns(page) if turn[0] == "assistant"]
    assert cut, chat_turns(page)
    [saved] = saved_conversations(app.data_dir)
    # what was written, kept (the page renders it as Markdown: compared on its words)
    assert saved[0] == "Please tell me a very long story." and saved[1].split()[:5] == cut.split()[:5], (saved, cut)
    page.get_by_role("button", name="Regenerate").click()
    page.wait_for_function("() => /Replying/.test(document.querySelector('#chat-status').innerText)", timeout=30_000)
    # Undo while the reply is written is refused and says so: the reply's next update brought the
    # exchange back on the page, while the undone chat was saved (a reload showed another chat)
    page.locator("#undo").click()
    page.get_by_text("The reply is not over yet: undo once it ends").first.wait_for(timeout=30_000)
    reply_loop_over(page)
    page.wait_for_timeout(1500)  # the finished reply is saved when the stream ends
    assert "cut off" not in page.locator("#chat-status").inner_text()
    shown = chat_turns(page)
    assert [role for role, _ in shown] == ["user", "assistant"], shown
    page.reload()
    page.wait_for_function("() => document.querySelectorAll(\"#chatbot [data-testid='bot']\").length === 1",
                           timeout=30_000)
    page.wait_for_timeout(1000)
    assert "cut off" not in page.locator("#chat-status").inner_text()  # finished: nothing to say on reopening
    assert chat_turns(page) == shown  # the page showed what was saved
    page.locator("#undo").click()  # once the reply is over, Undo takes the exchange away, saved too
    page.wait_for_function("() => !document.querySelector(\"#chatbot [data-testid='user']\")", timeout=30_000)
    page.wait_for_timeout(1000)
    assert saved_conversations(app.data_dir) in ([], [[]]), saved_conversations(app.data_dir)
    context.close()


def test_messages_sent_while_busy_are_answered_in_order(chromium, launch, slow_tiny):
    """A message sent mid-stream and one sent while follow-ups are computed are both answered, in order.
    The replies stream for seconds (the 24-layer tiny model): the 2-layer model's 300 tokens took 0.2 s,
    and in CI runs the second message reached the app after the first reply had ended."""
    app = launch(model=slow_tiny)
    context, page = open_app(chromium, app.url)
    # replies of 1,500 tokens stream for about 9 s: with 600 (3.5 s), the second message once reached the
    # app after the first reply had ended, near the end of a CI run (no "1 more message queued" in 30 s)
    long_replies(page, tokens=1500)
    # the third message is sent from the page itself the moment the status says follow-ups are being
    # thought of (no round trip through the test), once the page shows the second message, and records
    # what the status said then. (In one CI run the third was answered before the second: the page had
    # clicked Send mid-stream, but the second message can reach the server after the first reply's
    # follow-ups have begun, and a third sent at that status then reached it first. Not seen here, also
    # with both cores loaded.)
    page.evaluate("""(user) => {
        const status = document.querySelector('#chat-status');
        new MutationObserver((_, observer) => {
            if (!/follow-up/i.test(status.innerText) || document.querySelectorAll(user).length < 2) return;
            observer.disconnect();
            window.sentDuring = status.innerText;
            const box = document.querySelector('#chat-input textarea');
            Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set.call(box, 'third message');
            box.dispatchEvent(new Event('input', {bubbles: true}));
            setTimeout(() => document.querySelector('#send').click(), 0);
        }).observe(status, {subtree: true, childList: true, characterData: true});
    }""", USER)
    send(page, "first message")
    page.wait_for_function("() => /Replying/.test(document.querySelector('#chat-status').innerText)", timeout=60_000)
    page.wait_for_function("(b) => (document.querySelector(b)?.innerText || '').trim().length > 0", arg=BOT)
    send(page, "second message")
    # sent mid-stream: the running reply says one more message waits. (Read once right after the
    # click, the status once said "0.1s": Gradio's timer on it, an output of the pending send.)
    page.wait_for_function("() => /Replying.*1 more message queued/.test(document.querySelector('#chat-status').innerText)",
                           timeout=30_000)
    try:
        page.wait_for_function("(b) => document.querySelectorAll(b).length === 3", arg=BOT, timeout=120_000)
    except Exception as exc:  # a timeout: say what the page shows (it happened once in CI, never here)
        raise AssertionError(f"no third reply: turns {chat_turns(page)!r}, status "
                             f"{page.locator('#chat-status').inner_text()!r}, third message sent while the status "
                             f"said {page.evaluate('window.sentDuring || null')!r}") from exc
    reply_loop_over(page, timeout=120_000)
    assert "follow-up" in page.evaluate("window.sentDuring")
    turns = chat_turns(page)
    assert [role for role, _ in turns] == ["user", "assistant"] * 3, turns
    assert [text for role, text in turns if role == "user"] == ["first message", "second message", "third message"]
    assert all(text for _, text in turns)
    context.close()


def share_link(page):
    reply_loop_over(page)  # Share refuses a reply still being written (a slower CPU is still at it here)
    page.get_by_text("Share and export").click()
    page.locator("#share").click()
    page.wait_for_function("() => document.querySelector('#share-link textarea, #share-link input').value.includes('share=')",
                           timeout=30_000)
    return page.locator("#share-link textarea, #share-link input").first.input_value()


def shared_messages(browser, link):
    context = browser.new_context()
    page = context.new_page()
    page.goto(link)
    page.wait_for_selector("#share-header", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#share-header').innerText.trim().length > 0", timeout=30_000)
    return context, page


def test_share_link_read_only_continue_and_restart(chromium, launch, tiny_causal, tmp_path_factory):
    data = tmp_path_factory.mktemp("share-data")
    app = launch(model=tiny_causal, data_dir=data)
    context, page = open_app(chromium, app.url)
    send(page, "Remember the lighthouse")
    wait_reply(page)
    link = share_link(page)
    assert re.search(r"\?share=[A-Za-z0-9_-]{22}$", link)
    # the JSON export holds what the shared view shows: the system prompt, the settings and the time
    # (it had "created": null and "settings": {})
    page.locator("#export-json").click()
    href = page.locator("#export-file a[href]").first
    href.wait_for(timeout=30_000)
    exported = json.loads(page.request.get(href.get_attribute("href")).text())
    assert exported["created"] and exported["model"] == tiny_causal and exported["adapter"] is None
    assert {"temperature", "top_p", "top_k", "max_new_tokens"} <= set(exported["settings"]["sampling"])
    from convo.settings import ChatSettings

    system = ChatSettings().system_prompt.strip()  # the Settings' default, not opened here
    assert exported["messages"][0] == {"role": "system", "content": system} and system
    assert exported["messages"][1] == {"role": "user", "content": "Remember the lighthouse"}

    visitor, view = shared_messages(chromium, link)
    assert "Remember the lighthouse" in view.locator("#share-chatbot").inner_text()
    assert not view.locator("#main-view").is_visible()
    assert not view.locator("#share-chatbot textarea").count()  # read-only: no input on the shared view
    assert not view.locator("#share-chatbot").get_by_role("button", name="Clear").is_visible()  # nor a trash icon
    view.locator("#continue").click()
    view.wait_for_selector("#main-view", state="visible")
    assert "Remember the lighthouse" in view.locator("#chatbot").inner_text()
    # the copy is the visitor's own conversation from the start: a reload before any new message
    # reopens it (the copy lived in the page only, so a reload showed an empty chat)
    view.wait_for_function("() => localStorage.getItem('convo-conversation')", timeout=30_000)  # its id, kept
    assert len(saved_conversations(data)) == 2  # the sharer's and the visitor's copy
    view.reload()
    view.wait_for_function("() => document.querySelector('#chatbot')?.innerText.includes('Remember the lighthouse')",
                           timeout=30_000)
    send(view, "A visitor's new message")
    wait_reply(view, count=2)
    # the address leaves the link: a reload opens the visitor's own conversation, not the read-only view
    assert "share=" not in view.url
    view.reload()
    view.wait_for_function("() => document.querySelector('#chatbot')?.innerText.includes(\"visitor's new message\")",
                           timeout=30_000)
    assert view.locator("#main-view").is_visible() and not view.locator("#share-view").is_visible()
    visitor.close()

    again, check = shared_messages(chromium, link)
    text = check.locator("#share-chatbot").inner_text()
    assert "Remember the lighthouse" in text and "visitor's new message" not in text
    again.close()

    app.stop()  # the link survives a restart
    restarted = launch(model=tiny_causal, data_dir=data)
    after, view = shared_messages(chromium, link.replace(app.url, restarted.url))
    assert "Remember the lighthouse" in view.locator("#share-chatbot").inner_text()
    after.close()
    context.close()


def test_revoked_and_unknown_links_show_not_available(chromium, launch, tiny_causal, tmp_path_factory):
    data = tmp_path_factory.mktemp("revoke-data")
    app = launch(model=tiny_causal, data_dir=data)
    context, page = open_app(chromium, app.url)
    send(page, "Soon revoked")
    wait_reply(page)
    link = share_link(page)
    page.locator("#revoke").click()
    page.wait_for_function("() => document.querySelector('#revoke-status').innerText.includes('Revoked')", timeout=30_000)
    for url in (link, app.url + "?share=AAAAAAAAAAAAAAAAAAAAAA", app.url + "?share=../../etc"):
        visitor, view = shared_messages(chromium, url)
        assert view.locator("#share-header").inner_text().strip() == "This conversation is not available"
        assert not view.locator("#main-view").is_visible()
        assert not view.locator("#share-chatbot").is_visible()
        back = view.locator("#continue")  # a way back to the app
        assert back.inner_text().strip() == "Start a new conversation"
        back.click()
        view.wait_for_selector("#main-view", state="visible", timeout=30_000)
        assert not view.locator(USER).count()
        visitor.close()
    app.stop()
    restarted = launch(model=tiny_causal, data_dir=data)
    visitor, view = shared_messages(chromium, link.replace(app.url, restarted.url))
    assert view.locator("#share-header").inner_text().strip() == "This conversation is not available"
    visitor.close()
    context.close()


@pytest.mark.slow
def test_bundled_model_reply_and_suggested_questions(chromium, launch):
    app = launch()  # the bundled default model
    context, page = open_app(chromium, app.url)
    send(page, "Hi! I just adopted a puppy and I have no idea how to train her.")
    assert len(wait_reply(page, timeout=120_000).split()) >= 3
    page.wait_for_selector("#suggestion-0", state="visible", timeout=120_000)
    suggestions = [page.locator(f"#suggestion-{i}").inner_text().strip() for i in range(3)
                   if page.locator(f"#suggestion-{i}").is_visible()]
    assert suggestions and all(s.endswith("?") and len(s.split()) > 1 for s in suggestions)
    assert page.locator("#suggestions-label").is_visible()  # labelled as what convo would ask
    page.locator("#suggestion-0").click()  # the assistant asks it, the user does not
    page.wait_for_function("([b, q]) => document.querySelector(b).innerText.trim().endsWith(q)",
                           arg=[BOT, suggestions[0]], timeout=30_000)
    assert page.locator(USER).count() == 1
    # the next reply's suggestions, then one without any (curious mode off): those shown are hidden
    # (the server sends the chips' updates only while some are shown, so it must know they are)
    page.wait_for_selector("#suggestion-0", state="hidden", timeout=10_000)
    send(page, "She is a beagle and she chews shoes.")
    wait_reply(page, count=2, timeout=120_000)
    page.wait_for_selector("#suggestion-0", state="visible", timeout=120_000)
    page.get_by_role("button", name="Settings ▼").click()
    page.locator("#curious input").uncheck()
    send(page, "Thanks, that helps.")
    wait_reply(page, count=3, timeout=120_000)
    reply_loop_over(page, timeout=120_000)
    assert page.locator("#suggestion-0").is_hidden() and page.locator("#suggestions-label").is_hidden()
    context.close()


def test_finetune_tab_uploads_reports_trains_and_plots(chromium, launch, tiny_causal, tmp_path_factory):
    from pathlib import Path

    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    coqa = Path(__file__).parent / "data" / "good" / "coqa.json"
    app = launch(model=tiny_causal, data_dir=tmp_path_factory.mktemp("ft-data"))
    context, page = open_app(chromium, app.url)
    page.get_by_role("tab", name="Fine-tune").click()
    page.locator("#ft-upload input[type=file]").set_input_files(str(coqa))
    page.wait_for_function("() => /passages/i.test(document.querySelector('#ft-report').innerText)", timeout=60_000)
    # no loss chart before a job has a loss (it showed empty axes)
    assert not page.locator("#ft-loss-plot").is_visible()
    report = page.locator("#ft-report").inner_text()
    assert "3" in report and "16" in report  # 3 stories, 16 questions in the file
    # nothing runs past the report's box (the file's 64-digit hash did), and its table has a header
    # that says what it holds (it was an empty row)
    overflow = page.evaluate("""() => [...document.querySelectorAll('#ft-report *')]
        .filter(e => e.getBoundingClientRect().right > document.querySelector('#ft-report').getBoundingClientRect().right + 1)
        .map(e => e.tagName + ' ' + e.innerText.slice(0, 20))""")
    assert overflow == [], overflow
    assert page.locator("#ft-report thead th").all_inner_texts() == ["in the file", "count"]
    page.get_by_text("Training settings").click()
    page.locator("#ft-name input, #ft-name textarea").first.fill("browser-adapter")
    steps = page.locator("#ft-max-steps input")
    steps.fill("4")
    steps.press("Tab")
    # the planned split of the run's time is shown before it starts, and follows the settings
    page.wait_for_function("() => /Planned: 4 steps of 8 examples/.test(document.querySelector('#ft-plan').innerText)",
                           timeout=30_000)
    assert "% training" in page.locator("#ft-plan").inner_text()
    page.locator("#ft-start").click()
    page.wait_for_function("() => /Finished/.test(document.querySelector('#ft-status').innerText)", timeout=240_000)
    # a line through the 4 steps, whichever line the page draws first. It stayed steps behind after
    # "Finished" (in a CI run, and 2 runs of 2 here): the title changed with every update (it gave the
    # latest losses), a new title makes the page build the chart again, and data that came meanwhile
    # was lost. The page may draw the chart just after the status line of the same update: 5 s.
    try:
        page.wait_for_function("() => [...document.querySelectorAll('#ft-loss-plot .mark-line path')]"
                               ".some(p => ((p.getAttribute('d') || '').match(/L/g) || []).length >= 3)", timeout=5_000)
    except PlaywrightTimeout:
        pass  # the assertion says what the chart holds
    paths = page.locator("#ft-loss-plot .mark-line path").evaluate_all("ps => ps.map(p => p.getAttribute('d'))")
    assert max([d.count("L") for d in paths], default=0) >= 3 and not any("NaN" in d for d in paths), paths
    assert page.locator("#ft-loss-plot").is_visible()
    box = page.locator("#ft-loss-plot svg, #ft-loss-plot canvas").first.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 150, box  # drawn at the tab's width, not the hidden 0
    # the loss is drawn as a line over a numeric y axis (it was a point scale: a label per value, no line)
    y_axis = page.locator("#ft-loss-plot [aria-label^='Y-axis']").first.get_attribute("aria-label")
    assert "linear scale" in y_axis and "discrete" not in y_axis, y_axis
    ticks = page.locator("#ft-loss-plot [aria-label^='Y-axis'] .role-axis-label text").all_text_contents()
    assert len(ticks) >= 2 and all(re.fullmatch(r"-?[\d.,]+", t.strip()) for t in ticks), ticks
    # ... and the line is drawn, in a colour its legend names (it had no colour: the plot was built
    # from an empty frame, so its colour scale had no categories and the stroke was "none")
    stroke = page.locator("#ft-loss-plot .mark-line path").first.evaluate("p => getComputedStyle(p).stroke")
    assert stroke not in ("none", "", "rgba(0, 0, 0, 0)"), stroke
    legend = page.locator("#ft-loss-plot .role-legend-label text").all_text_contents()
    assert "train" in legend, legend
    # the progress line gives the latest losses (while a line has one point the chart draws none)
    line = page.locator("#ft-progress").inner_text()
    assert re.search(r"latest loss: train \d\.\d{4} at step 4, validation \d\.\d{4} at step 4", line), line
    # the validation loss is a line too: measured before the first step (the base model) and after the
    # last (a run shorter than eval_every had no point at all, the final check was left off the chart).
    page.wait_for_function("() => [...document.querySelectorAll('#ft-loss-plot .mark-line path')]"
                           ".filter(p => (p.getAttribute('d') || '').includes('L')).length >= 2", timeout=30_000)
    paths = page.locator("#ft-loss-plot .mark-line path").evaluate_all("ps => ps.map(p => p.getAttribute('d'))")
    assert len(paths) == 2 and all(d and "L" in d and "NaN" not in d for d in paths), paths
    # ... and the comparison gives the base model's validation loss beside the adapter's (it was blank)
    row = page.locator("#ft-metrics tr", has_text="validation loss").inner_text()
    assert re.fullmatch(r"validation loss\s+\d+\.\d+\s+\d+\.\d+", row.strip()), row
    # the held-out examples show base model and adapter side by side, inside the tab (the passage's
    # column filled it and the two outputs compared were past its edge)
    page.wait_for_function("() => document.querySelector('#ft-samples').innerText.includes('?')", timeout=30_000)
    assert page.evaluate(COLUMNS_PAST_THE_EDGE, "#ft-samples") == []
    assert "python -m training.finetune" in page.locator("#ft-command").inner_text()
    assert (app.data_dir / "adapters" / "browser-adapter" / "adapter_config.json").is_file()
    # the adapter is named, never shown by its server path: in the status, the Adapter menu, the model status
    status = page.locator("#ft-status").inner_text()
    assert "saved as browser-adapter" in status and str(app.data_dir) not in status, status
    page.locator("#adapter-name input").click()
    options = page.get_by_role("option").all_inner_texts()
    assert [o.replace("✓", "").strip() for o in options] == ["(none)", "browser-adapter"], options
    page.get_by_role("option", name="browser-adapter").click()
    page.locator("#load-model").click()
    page.wait_for_function("() => /Loaded .* \\+ browser-adapter/.test(document.querySelector('#model-status').innerText)",
                           timeout=60_000)
    assert page.locator("#adapter-name input").input_value() == "browser-adapter"
    assert str(app.data_dir) not in page.locator("#model-status").inner_text()
    context.close()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_synth_tab_keyword_config_preview_run_and_send_to_finetune(chromium, launch, tmp_path_factory):
    """Issue 7's acceptance in the tab: a keyword config of 8 words with an exclude list makes
    conversations with the bundled model; each mentions its word and none holds an excluded entry."""
    import json
    from pathlib import Path

    from convo import synth

    config_path = Path(__file__).parent / "data" / "synth" / "keywords.json"
    config = synth.load_keyword_config(config_path)
    temp = tmp_path_factory.mktemp("synth-gradio-temp")
    app = launch(data_dir=tmp_path_factory.mktemp("synth-data"), GRADIO_TEMP_DIR=str(temp))
    context, page = open_app(chromium, app.url)
    page.get_by_role("tab", name="Synthetic").click()
    page.locator("#synth-mode").get_by_label("keyword", exact=True).check()
    page.locator("#synth-keyword-config input[type=file]").set_input_files(str(config_path))
    page.wait_for_function("(n) => document.querySelector('#synth-words textarea').value.trim().split('\\n').length === n",
                           arg=len(config.words), timeout=30_000)
    assert page.locator("#synth-words textarea").input_value().split() == config.words
    assert "chatgpt" in page.locator("#synth-exclude textarea").input_value()
    page.get_by_text("Generation settings").click()
    for selector, value in (("#synth-random-seed input", "1"), ("#synth-max-attempts input", "3")):
        page.locator(selector).fill(value)
        page.locator(selector).press("Tab")

    page.locator("#synth-preview").click()
    page.wait_for_function("() => /^3\\. /m.test(document.querySelector('#synth-preview-output').innerText)",
                           timeout=180_000)
    preview = page.locator("#synth-preview-output").inner_text()
    assert all(f"{n}. " in preview for n in (1, 2, 3)) and "apple" in preview
    assert not list(temp.rglob("conversations.jsonl")), "a preview writes nothing"

    page.locator("#synth-run").click()
    page.wait_for_selector("#synth-progress [data-state=finished]", state="attached", timeout=600_000)
    kept = int(page.locator("#synth-progress .synth-progress").get_attribute("data-kept"))
    outputs = list(temp.rglob("conversations.jsonl"))
    assert len(outputs) == 1
    records = [json.loads(line) for line in outputs[0].read_text().splitlines()]
    words = [r["meta"]["word"] for r in records]
    assert len(records) == kept >= 5 and len(set(words)) == len(words) and set(words) <= set(config.words)
    exclude = synth.compile_exclude(config.exclude)
    rows = table_rows(page, "#synth-output-table")  # every attempt, kept or dropped, newest first
    dropped = int(page.locator("#synth-progress .synth-progress").get_attribute("data-dropped"))
    assert len(rows) == kept + dropped
    table = "\n".join(rows)
    for record in records:
        text = "\n".join(m["content"] for m in record["messages"])
        assert synth.mentions(text, record["meta"]["word"]), text
        assert not any(pattern.search(text) for _, pattern in exclude), text
        assert [m["role"] for m in record["messages"]][:2] == ["user", "assistant"]
        assert record["meta"]["word"] in table
    assert "python -m convo synth" in page.locator("#synth-command").inner_text()

    page.locator("#synth-send-finetune").click()
    page.wait_for_function("() => /chat JSONL, ready to train/.test(document.querySelector('#ft-report')?.innerText)",
                           timeout=60_000)
    assert f"{kept} examples" in page.locator("#ft-report").inner_text()
    context.close()


def set_number(page, selector, value, settle_ms=800):
    """Type a number into a field and leave it, as a user does. Gradio 6 mounts the fields of a closed
    accordion only when it opens, and a field still mounting can put its initial value back over what was
    typed (a race only a test is fast enough to lose): type again until the value stays."""
    field = page.locator(selector).first
    field.wait_for(state="visible")
    for _ in range(5):
        field.fill(str(value))
        field.press("Tab")
        page.wait_for_timeout(settle_ms)
        if field.input_value() == str(value):
            return
    raise AssertionError(f"{selector} keeps {field.input_value()!r}, not {value!r}")


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_finetune_tab_qlora_on_the_bundled_model_then_chat_with_the_adapter(chromium, launch, tmp_path_factory):
    """Issue 4's acceptance in the tab: a ~100-passage CoQA file is reported within 10 s with its
    counts; a 30-step QLoRA run on the bundled model finishes with metrics, a side-by-side, an adapter
    and a card; the adapter then answers in Chat."""
    import importlib.util
    import json
    import time
    from pathlib import Path

    make = Path(__file__).parent / "data" / "make_coqa.py"
    spec = importlib.util.spec_from_file_location("make_coqa", make)
    make_coqa = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_coqa)
    data = tmp_path_factory.mktemp("coqa100") / "coqa100.json"
    written = make_coqa.write_coqa(data, 100)
    questions = sum(len(story["questions"]) for story in written["data"])

    app = launch(data_dir=tmp_path_factory.mktemp("ft-bundled"))
    context, page = open_app(chromium, app.url)
    page.get_by_role("tab", name="Fine-tune").click()
    started = time.monotonic()
    page.locator("#ft-upload input[type=file]").set_input_files(str(data))
    page.wait_for_function("() => /ready to train/.test(document.querySelector('#ft-report').innerText)",
                           timeout=30_000)
    took = time.monotonic() - started
    report = page.locator("#ft-report").inner_text()
    assert took < 10, f"report after {took:.1f} s"
    assert re.search(r"passages\s+100\b", report) and re.search(rf"questions\s+{questions}\b", report), report

    page.get_by_text("Training settings").click()
    page.locator("#ft-name input, #ft-name textarea").first.fill("bundled-qlora")
    page.locator("#ft-qlora").get_by_label("on: 4-bit NF4 base").check()
    for selector, value in (("#ft-max-steps input", 30), ("#ft-batch-size input[type=number]", 1),
                            ("#ft-max-length input[type=number]", 128), ("#ft-lr input", "0.001"),
                            ("#ft-eval-every input", 15), ("#ft-save-every input", 15)):
        set_number(page, selector, value)
    page.locator("#ft-start").click()
    page.wait_for_function("() => /Finished/.test(document.querySelector('#ft-status').innerText)", timeout=1_200_000)
    metrics = page.locator("#ft-metrics").inner_text()
    assert "ROUGE-L" in metrics and "BLEU" in metrics and "validation loss" in metrics, metrics
    samples = page.locator("#ft-samples").inner_text()
    assert "base model" in samples and "adapter" in samples, samples
    assert page.locator("#ft-loss-plot canvas, #ft-loss-plot svg").count() > 0

    adapter = app.data_dir / "adapters" / "bundled-qlora"
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= {p.name for p in adapter.iterdir()}
    meta = json.loads((adapter / "convo_adapter.json").read_text())
    assert meta["hyperparameters"]["quantization"] == "4bit" and meta["metrics"]["steps"] == 30
    assert meta["base_model"] == "bundled" and "rouge_l" in meta["metrics"]
    # the side-by-side shows what each question was asked about: the sentence the qg task trains on
    assert meta["samples"] and " ".join(meta["samples"][0]["prompt"].split()[:6]) in " ".join(samples.split()), samples
    card = (adapter / "README.md").read_text()
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in card and "4bit" in card and str(meta["metrics"]["rouge_l"]) in card

    page.locator("#adapter-name input").fill(str(adapter))
    page.locator("#adapter-name input").press("Enter")
    page.locator("#load-model").click()
    page.wait_for_function("() => /Loaded .*bundled-qlora/.test(document.querySelector('#model-status').innerText)",
                           timeout=120_000)
    page.get_by_role("tab", name="Chat").click()
    send(page, "Passage:\nAnna was a baker who lived in Kelso. Every Monday she walked to the market.")
    wait_reply(page, timeout=180_000)
    # read once the reply is whole (the adapter on a 4-bit base decodes slowly here: read 0.5 s after its
    # first word, a CI run saw only "Anna"); follow-up suggestions may still be coming
    page.wait_for_function("() => !/Replying/.test(document.querySelector('#chat-status').innerText)", timeout=300_000)
    reply = page.locator(BOT).first.inner_text()
    assert len(reply.split()) >= 2, reply
    context.close()


def test_synth_cancel_stops_the_run_and_says_how_many_were_written(chromium, tiny_app):
    """Cancel during a run: the run stops (fewer conversations than asked), the status says cancelled."""
    started = time.time()
    context, page = open_app(chromium, tiny_app.url)
    page.get_by_role("tab", name="Synthetic").click()
    seeds = [f"Tell me about thing number {n}." for n in range(12)]
    page.locator("#synth-seeds textarea").fill("\n".join(seeds))  # 12 seeds x 4 personas = 48 conversations
    page.locator("#synth-run").click()
    page.wait_for_selector("#synth-progress [data-state=running]", state="attached", timeout=120_000)
    page.locator("#synth-send-finetune").click()  # during the run: refused with a reason, nothing sent
    page.get_by_text("The run is still going").first.wait_for(timeout=30_000)
    assert page.locator("#synth-progress [data-state=running]").count() == 1
    page.wait_for_timeout(1000)
    page.locator("#synth-cancel").click()
    page.wait_for_selector("#synth-progress [data-state=cancelled]", state="attached", timeout=30_000)
    status = page.locator("#synth-status").inner_text()
    kept = int(page.locator("#synth-progress .synth-progress").get_attribute("data-kept"))
    assert re.search(rf"Cancelled: {kept} new conversations? written to conversations.jsonl", status), status
    temp = Path(os.environ["GRADIO_TEMP_DIR"])
    outputs = [p for p in temp.rglob("convo-synth/*/conversations.jsonl") if p.stat().st_ctime >= started]
    assert len(outputs) == 1
    assert len(outputs[0].read_text().splitlines()) == kept < 48
    # every column is in view, "why dropped" included (the conversation took the whole width)
    assert page.evaluate(COLUMNS_PAST_THE_EDGE, "#synth-output-table") == []
    # the table of conversations breaks no word letter by letter
    cells = "#synth-output-table th, #synth-output-table [role=gridcell]"
    assert page.locator(cells).count() >= 4 and page.evaluate(SPLIT_WORDS, cells) == []
    # nor on a narrow screen (Gradio's header spans broke "messages" letter by letter), where the
    # table scrolls sideways rather than squeeze its columns to a few pixels each
    page.set_viewport_size({"width": 390, "height": 800})
    page.wait_for_timeout(300)
    assert page.evaluate(SPLIT_WORDS, cells) == []
    squeezed = page.evaluate(SQUEEZED, "#synth-output-table")
    assert squeezed["narrowest"] >= 39 and squeezed["scrolls"], squeezed
    context.close()


def test_synth_shows_only_the_current_modes_and_runs_results(chromium, tiny_app):
    """A run replaces the preview above its table (they showed different conversations, one above the
    other), and switching mode clears the other mode's preview, progress, status and table (a
    walkthrough found the keyword results under the persona controls)."""
    context, page = open_app(chromium, tiny_app.url)
    page.get_by_role("tab", name="Synthetic").click()
    page.locator("#synth-seeds textarea").fill("Tell me about tea.")  # 1 seed x 4 personas
    page.locator("#synth-preview").click()
    page.wait_for_function("() => /^1\\. /m.test(document.querySelector('#synth-preview-output').innerText)",
                           timeout=120_000)
    page.locator("#synth-run").click()
    page.wait_for_selector("#synth-progress [data-state=finished]", state="attached", timeout=120_000)
    assert page.locator("#synth-preview-output").inner_text().strip() == ""
    assert table_rows(page, "#synth-output-table") and page.locator("#synth-status").inner_text().startswith("Done")
    # the conversation's turns each start a line (the cell ran them together); the seed opens it
    head = page.evaluate("() => [...document.querySelectorAll('#synth-output-table thead th')].map(th => th.innerText.trim())")
    conversation = page.locator(f"#synth-output-table [data-testid='cell-0-{head.index('conversation')}']").inner_text()
    assert re.match(r"User: Tell me about tea\.\nAssistant: ", conversation), conversation
    # a Preview after the run says what it did, where the run's "Done: ..." stood: a failed one that
    # it failed and wrote nothing (the status kept "Done", under the Preview's error), a good one
    # that it wrote nothing (its three conversations replace the run's in the table)
    page.locator("#synth-seeds textarea").fill("")
    page.locator("#synth-preview").click()
    page.wait_for_function("() => /Error/.test(document.querySelector('#synth-preview-output').innerText)",
                           timeout=60_000)
    assert page.locator("#synth-status").inner_text().strip() == "Preview failed (below): nothing was written."
    assert page.locator("#synth-progress [data-state=finished]").count() == 1  # the run's, as it was
    page.locator("#synth-seeds textarea").fill("Tell me about tea.")
    page.locator("#synth-preview").click()
    page.wait_for_function("() => /^Preview: /.test(document.querySelector('#synth-status').innerText)",
                           timeout=120_000)
    assert "Nothing was written" in page.locator("#synth-status").inner_text()
    assert page.locator("#synth-progress .synth-progress").count() == 0
    page.locator("#synth-mode").get_by_label("keyword", exact=True).check()
    page.wait_for_function("() => !document.querySelector('#synth-progress .synth-progress')", timeout=30_000)
    assert page.locator("#synth-status").inner_text().strip() == ""
    assert table_rows(page, "#synth-output-table") == []
    context.close()


def test_a_training_job_follows_its_owner_not_the_tab(chromium, launch, tiny_causal, tmp_path_factory):
    """A job started in one browser context is shown and cancellable in a new context of the same
    browser storage (the first page closed), invisible to another browser, and reclaimable by its id.
    Start is double-clicked: one job starts (two did, the second failing on the first's adapter), and
    the browser keeps the id that owns it."""
    app = launch(model=tiny_causal, data_dir=tmp_path_factory.mktemp("owner-data"))
    first, page = open_app(chromium, app.url)
    job_id = start_long_job(page, app.url, double_click=True)
    page.wait_for_timeout(3000)  # both clicks' events are over
    assert [job.name for job in (app.data_dir / "jobs").iterdir() if job.is_dir()] == [job_id]
    page.wait_for_function("() => /Queued|Preparing|Training/.test(document.querySelector('#ft-status').innerText)",
                           timeout=30_000)
    storage = first.storage_state()
    first.close()

    again = chromium.new_context(storage_state=storage)  # the same browser, a new window
    view = again.new_page()
    view.goto(app.url)
    view.get_by_role("tab", name="Fine-tune").click()
    view.wait_for_function("(id) => document.querySelector('#ft-status').innerText.includes(id)", arg=job_id,
                           timeout=60_000)
    assert re.search(r"Queued|Preparing|Training|Validating", view.locator("#ft-status").inner_text())
    view.locator("#ft-cancel").click()
    # the job stops before its first step or after the current one (on a loaded 2-core machine a first step
    # of this run took over 60 s)
    view.wait_for_function("() => /Cancelled/.test(document.querySelector('#ft-status').innerText)", timeout=180_000)
    assert not re.search(r"Cancelled at before|at before", view.locator("#ft-status").inner_text())
    again.close()

    other, stranger = open_app(chromium, app.url)  # another user (no shared storage)
    stranger.get_by_role("tab", name="Fine-tune").click()
    stranger.wait_for_timeout(3000)
    assert stranger.locator("#ft-status").inner_text().strip() == "No training job yet."
    stranger.get_by_text("Open a job by its id").click()
    stranger.locator("#ft-job-id input, #ft-job-id textarea").first.fill(job_id)
    stranger.locator("#ft-open-job").click()
    stranger.wait_for_function("(id) => document.querySelector('#ft-status').innerText.includes(id)", arg=job_id,
                               timeout=30_000)
    assert "Cancelled" in stranger.locator("#ft-status").inner_text()
    other.close()


def test_a_training_job_shows_what_it_does_before_its_first_step(chromium, launch, tiny_causal, tmp_path_factory,
                                                                  tmp_path):
    """A large file is read, checked and encoded before the first step: the status says which, with the
    encoding's progress bar, and Cancel stops the job there. (It said "Training: starting." the whole
    time: about a minute for CoQA's training set on a CPU.)"""
    app = launch(model=tiny_causal, data_dir=tmp_path_factory.mktemp("prep-data"))
    topics = ["tea", "rivers", "bread", "chess", "owls", "trains", "maps", "bees"]
    big = tmp_path / "chats.jsonl"
    n = 40_000
    with open(big, "w") as handle:  # distinct conversations: duplicates would be dropped
        for i in range(n):
            topic = topics[i % len(topics)]
            handle.write(json.dumps({"messages": [
                {"role": "user", "content": f"Tell me something about {topic}, note {i}."},
                {"role": "assistant", "content": f"Here is fact {i} about {topic}. What made you curious about {topic}?"}]})
                + "\n")
    context, page = open_app(chromium, app.url)
    page.get_by_role("tab", name="Fine-tune").click()
    page.locator("#ft-upload input[type=file]").set_input_files(str(big))
    page.wait_for_function("() => /ready to train/.test(document.querySelector('#ft-report').innerText)", timeout=120_000)
    page.locator("#ft-start").click()
    page.wait_for_function("() => /Preparing: encoding the training examples: [\\d,]+ \\/ [\\d,]+\\./"
                           ".test(document.querySelector('#ft-status').innerText)", timeout=120_000)
    status = page.locator("#ft-status").inner_text()
    done, total = (int(x.replace(",", "")) for x in re.search(r"examples: ([\d,]+) / ([\d,]+)", status).groups())
    assert 0.85 * n <= total <= n and done < total, status  # the training share of the distinct conversations
    bar = page.locator("#ft-progress progress")
    assert bar.get_attribute("max") == str(total) and int(bar.get_attribute("value")) < total
    assert re.search(r"encoding the training examples: [\d,]+ / " + f"{total:,}", page.locator("#ft-progress").inner_text())
    page.screenshot(path=str(tmp_path / "preparing.png"), full_page=True)
    page.locator("#ft-cancel").click()
    page.wait_for_function("() => /Cancelled/.test(document.querySelector('#ft-status').innerText)", timeout=60_000)
    assert "Cancelled before the first step" in page.locator("#ft-status").inner_text()
    log = next((app.data_dir / "jobs").glob("*/train.log")).read_text()
    assert re.search(r"^reading and checking train-chats\.jsonl$", log, re.M) and "encoding the training" in log, log[-2000:]
    assert not re.search(r"^step 1/", log, re.M), log[-2000:]
    context.close()


def test_training_settings_are_checked_in_the_words_of_the_form(chromium, tiny_app, tmp_path):
    """"Checkpoint every N steps" follows "Validate every N steps" while early stopping is on; a
    clash typed by hand is refused in the status, in the fields' labels (not code names)."""
    coqa = Path(__file__).parent / "data" / "good" / "coqa.json"
    context, page = open_app(chromium, tiny_app.url)
    page.get_by_role("tab", name="Fine-tune").click()
    page.locator("#ft-upload input[type=file]").set_input_files(str(coqa))
    page.wait_for_function("() => /passages/i.test(document.querySelector('#ft-report').innerText)", timeout=60_000)
    page.get_by_text("Training settings").click()
    set_number(page, "#ft-eval-every input", 30)
    page.wait_for_function("() => document.querySelector('#ft-save-every input').value === '90'", timeout=15_000)
    set_number(page, "#ft-save-every input", 25)
    page.locator("#ft-start").click()
    page.wait_for_function("() => /Not started/.test(document.querySelector('#ft-status').innerText)", timeout=30_000)
    page.wait_for_timeout(1500)  # the reason stays: nothing that ends later may replace it
    status = page.locator("#ft-status").inner_text()
    assert '"Checkpoint every N steps" (25) must be a multiple of "Validate every N steps" (30)' in status, status
    assert "save_every" not in status and "eval_every" not in status
    # the same message beside the fields it names, marked; none beside the others
    page.wait_for_selector("#ft-save-every.ft-invalid", timeout=15_000)
    for field in ("#ft-save-every", "#ft-eval-every", "#ft-patience"):
        assert '"Checkpoint every N steps" (25) must be a multiple' in page.locator(field).inner_text(), field
        assert "ft-invalid" in page.locator(field).get_attribute("class"), field
    assert "must be" not in page.locator("#ft-lr").inner_text() and "ft-invalid" not in page.locator("#ft-lr").get_attribute("class")
    color = page.locator("#ft-save-every .info-text").evaluate("e => getComputedStyle(e).color")
    assert re.match(r"rgb\((\d+), (\d+), (\d+)\)", color) and int(color[4:].split(",")[0]) > 150, color  # red
    page.screenshot(path=str(tmp_path / "settings-check.png"), full_page=True)
    set_number(page, "#ft-save-every input", 60)  # fixed: the messages go
    page.wait_for_function("() => !document.querySelector('.ft-invalid')", timeout=15_000)
    assert "must be" not in page.locator("#ft-save-every").inner_text()
    # a value out of range is named beside its field too, and Start says so; nothing else on the page
    # fails (Gradio's own bounds check failed the events: toasts "Value 5 is greater than maximum value
    # 1", and an "Error" badge over the model bar's Adapter menu, one of Start's outputs, until a reload)
    set_number(page, "#ft-lr input", 5)
    page.wait_for_selector("#ft-lr.ft-invalid", timeout=15_000)
    assert '"Learning rate" must be in (0, 1], got 5.0' in page.locator("#ft-lr").inner_text()
    page.locator("#ft-start").click()
    page.wait_for_function("() => /Not started/.test(document.querySelector('#ft-status').innerText)", timeout=30_000)
    page.wait_for_timeout(1500)
    assert '"Learning rate" must be in (0, 1]' in page.locator("#ft-status").inner_text()
    errors = page.evaluate("() => [...document.querySelectorAll('.toast-body.error, .error')].filter(e => e.offsetParent)"
                           ".map(e => e.innerText.trim())")
    assert errors == [], errors
    set_number(page, "#ft-lr input", 0.0002)
    page.wait_for_function("() => !document.querySelector('.ft-invalid')", timeout=15_000)
    # a name with characters an adapter's folder drops says, before the run, what it is saved as (an
    # emoji and non-Latin letters were dropped without a word); typed in as a user types, the box keeps it
    box = page.locator("#ft-name input, #ft-name textarea").first
    box.press_sequentially("explore ad 🎉 名前")
    page.wait_for_function("() => /Saved as/.test(document.querySelector('#ft-name').innerText)", timeout=15_000)
    assert 'Saved as "explore-ad"' in page.locator("#ft-name").inner_text()
    assert box.input_value() == "explore ad 🎉 名前"
    page.locator("#ft-name").screenshot(path=str(tmp_path / "adapter-name.png"))
    box.fill("curious-qg")
    page.wait_for_function("() => !/Saved as/.test(document.querySelector('#ft-name').innerText)", timeout=15_000)
    context.close()


def start_long_job(page, app_url, double_click: bool = False):
    """Upload the small CoQA file in the Fine-tune tab and start a long run; returns the job id."""
    coqa = Path(__file__).parent / "data" / "good" / "coqa.json"
    page.get_by_role("tab", name="Fine-tune").click()
    page.locator("#ft-upload input[type=file]").set_input_files(str(coqa))
    page.wait_for_function("() => /passages/i.test(document.querySelector('#ft-report').innerText)", timeout=60_000)
    page.get_by_text("Training settings").click()
    set_number(page, "#ft-max-steps input", 5000)
    if double_click:
        page.locator("#ft-start").dblclick()
    else:
        page.locator("#ft-start").click()
    page.wait_for_function("() => /Queued|Training/.test(document.querySelector('#ft-status').innerText)",
                           timeout=60_000)
    status = page.locator("#ft-status").inner_text()
    assert re.search(r"Job id: (\S+)", status), status
    return re.search(r"Job id: (\S+)", status).group(1)


def show_all_jobs(page, key=None):
    """Open the operator panel (once), enter ``key`` if given, press Show all jobs; the panel's answer."""
    panel = page.locator("#ft-operator-status")
    if not page.locator("#ft-show-all").is_visible():
        page.get_by_text("All jobs (operator)").click()
        page.wait_for_selector("#ft-show-all", state="visible", timeout=30_000)
    page.wait_for_selector("#ft-operator-status", state="attached", timeout=30_000)
    page.evaluate("() => { document.querySelector('#ft-operator-status').dataset.before = "
                  "document.querySelector('#ft-operator-status').innerText; }")
    if key is not None:
        page.locator("#ft-operator-key input").fill(key)
    page.locator("#ft-show-all").click()
    page.wait_for_function("() => { const s = document.querySelector('#ft-operator-status'); "
                           "return /^(That is not|Only the operator|\\d+ jobs?, )/.test(s.innerText.trim()) "
                           "&& s.innerText !== s.dataset.before; }", timeout=30_000)
    return panel.inner_text()


def test_the_operator_sees_and_cancels_every_job_a_user_does_not(chromium, launch, tiny_causal, tmp_path_factory):
    """An operator (the key in CONVO_OPERATOR_KEY) lists all jobs with state, owner and step, opens
    and cancels another user's job; a normal user, with or without a wrong key, sees none of it."""
    app = launch(model=tiny_causal, data_dir=tmp_path_factory.mktemp("operator-data"),
                 CONVO_OPERATOR_KEY="op-key-for-tests-123")
    owner_context, owner = open_app(chromium, app.url)
    job_id = start_long_job(owner, app.url)

    user_context, user = open_app(chromium, app.url)
    user.get_by_role("tab", name="Fine-tune").click()
    assert "Only the operator sees all jobs" in show_all_jobs(user)
    assert show_all_jobs(user, key="wrong-key").startswith("That is not the operator key. Only the operator")
    assert job_id not in user.locator("#ft-all-jobs").inner_text()
    assert user.locator("#ft-operator-key input").input_value() == ""  # a key typed is never kept in the page
    user_context.close()

    op_context, op = open_app(chromium, app.url)
    op.get_by_role("tab", name="Fine-tune").click()
    answer = show_all_jobs(op, key="op-key-for-tests-123")
    assert re.search(r"1 job, 1 queued or running", answer), answer
    assert op.locator("#ft-operator-key input").input_value() == ""
    rows = table_rows(op, "#ft-all-jobs")
    assert len(rows) == 1 and job_id in rows[0], rows
    assert re.search(r"queued|running", rows[0]) and re.search(r"browser [0-9a-f]{6}\b", rows[0]), rows
    assert re.search(r"\n(\d+/5000|starting)\n", rows[0]), rows  # the step (the count, once the run knows it)
    op.locator("#ft-operator-job input").click()
    op.get_by_role("option", name=job_id).click()
    op.locator("#ft-operator-open").click()
    op.wait_for_function("(id) => document.querySelector('#ft-status').innerText.includes(id)", arg=job_id,
                         timeout=30_000)
    op.screenshot(path=str(app.data_dir.parent / "operator.png"), full_page=True)
    op.locator("#ft-operator-cancel").click()
    op.wait_for_function("() => /Cancelling/.test(document.querySelector('#ft-operator-status').innerText)",
                         timeout=30_000)
    # the owner's own tab follows: the job it started is cancelled
    owner.wait_for_function("() => /Cancelled/.test(document.querySelector('#ft-status').innerText)", timeout=180_000)
    show_all_jobs(op)  # still unlocked: no key needed again on this page
    assert "cancelled" in table_rows(op, "#ft-all-jobs")[0]
    op_context.close()
    owner_context.close()


SPLIT_WORDS = """(sel) => {
    // words of the matched elements that the layout breaks over two lines ("rec/ords"), where a word
    // runs up to a space or a character a line may break after (a tiny model's "Doic?boman"); a word
    // wider than its cell cannot be kept whole and is not counted
    const broken = [];
    for (const cell of document.querySelectorAll(sel)) {
        const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
        for (let node; (node = walker.nextNode());) {
            for (const m of node.data.matchAll(/[^\\s?!\\/\\-]+[?!\\/\\-]?/g)) {
                const range = document.createRange();
                range.setStart(node, m.index);
                range.setEnd(node, m.index + m[0].length);
                const rects = [...range.getClientRects()].filter(r => r.width > 0);
                const tops = new Set(rects.map(r => Math.round(r.top)));
                const wide = rects.reduce((sum, r) => sum + r.width, 0) > cell.clientWidth;
                if (tops.size > 1 && !wide) broken.push(m[0]);
            }
        }
    }
    return broken;
}"""


SQUEEZED = """(sel) => {
    // a dataframe's narrowest visible body cell (pixels), and whether the table scrolls sideways
    const cells = [...document.querySelectorAll(sel + ' [role=gridcell]')].filter(c => c.offsetParent);
    const box = document.querySelector(sel + ' .upload-container');
    return {narrowest: Math.round(Math.min(...cells.map(c => c.getBoundingClientRect().width))),
            scrolls: box.scrollWidth > box.clientWidth && getComputedStyle(box).overflowX === 'auto'};
}"""


def is_red(page, selector) -> bool:
    rgb = page.locator(selector).evaluate("e => getComputedStyle(e).backgroundColor")
    r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
    return r > 180 and g < 120 and b < 120


def selected_tab(page) -> str:
    return page.locator("#tabs [role=tab][aria-selected=true]").inner_text().strip()


def test_the_open_tab_is_in_the_address(chromium, tiny_app):
    """A link or a reload opens the tab it names (every reload went back to Chat), and switching tabs,
    by a click or by a button such as "Ask in chat", keeps the address in step."""
    context = chromium.new_context()
    page = context.new_page()
    page.goto(tiny_app.url + "?tab=finetune")
    page.wait_for_function("() => document.querySelector('#tabs [role=tab][aria-selected=true]')?.innerText"
                           " === 'Fine-tune'", timeout=60_000)
    page.get_by_role("tab", name="Synthetic").click()
    page.wait_for_url("**/?tab=synth")
    page.reload()
    page.wait_for_function("() => document.querySelector('#tabs [role=tab][aria-selected=true]')?.innerText"
                           " === 'Synthetic'", timeout=60_000)
    page.get_by_role("tab", name="Chat").click()
    page.wait_for_url(tiny_app.url)
    page.goto(tiny_app.url + "?tab=questions")
    page.wait_for_function("() => document.querySelector('#tabs [role=tab][aria-selected=true]')?.innerText"
                           " === 'Questions'", timeout=60_000)
    passage = Path(__file__).parent / "data" / "passages" / "marathon.txt"
    page.locator("#questions-passage textarea").fill(passage.read_text(encoding="utf-8"))
    page.locator("#questions-generate").click()
    page.locator("#questions-table [data-testid='cell-0-1']").wait_for(timeout=60_000)
    # feeling was not weighed: its blank column says so (a walkthrough wondered why it was empty)
    head = page.evaluate("() => [...document.querySelectorAll('#questions-table thead th')].map(th => th.innerText.trim())")
    assert "Sentiment (off)" in head, head
    page.locator("#questions-table [data-testid='cell-0-1']").click()
    page.wait_for_function("() => document.querySelector('#questions-selected textarea').value", timeout=30_000)
    page.locator("#questions-ask-chat").click()  # the handler switches to Chat
    page.wait_for_url(tiny_app.url)
    assert selected_tab(page) == "Chat"
    page.goto(tiny_app.url + "?tab=Synth")  # typed by hand
    page.wait_for_function("() => document.querySelector('#tabs [role=tab][aria-selected=true]')?.innerText"
                           " === 'Synthetic'", timeout=60_000)
    page.goto(tiny_app.url + "?tab=nonsense")
    page.wait_for_selector("#chat-input textarea", timeout=60_000)
    page.wait_for_timeout(500)
    assert selected_tab(page) == "Chat"
    context.close()


def test_small_things_stop_buttons_tables_and_the_token_report(chromium, tiny_app):
    """Stop/Cancel buttons are not red while nothing runs; the upload report's table never breaks a
    word letter by letter (also in a narrow window); the token report follows "Max tokens per example"."""
    context, page = open_app(chromium, tiny_app.url)
    # on a phone the title takes the width (the sign-in line goes below it) and keeps its words whole:
    # squeezed beside the sign-in line, it stood as "curio / us conve / rsatio / nal"
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate(SPLIT_WORDS, "#title h1, #title p") == []
    assert page.locator("#title").bounding_box()["width"] > 300
    page.set_viewport_size({"width": 900, "height": 900})
    assert not is_red(page, "#stop")
    page.locator("#load-model").click()
    page.wait_for_function("() => /Loaded/.test(document.querySelector('#model-status').innerText)", timeout=60_000)
    page.get_by_role("tab", name="Fine-tune").click()
    assert not is_red(page, "#ft-cancel")
    page.locator("#ft-upload input[type=file]").set_input_files(str(Path(__file__).parent / "data" / "good" / "coqa.json"))
    page.wait_for_function("() => /longer than 512 tokens/.test(document.querySelector('#ft-report').innerText)",
                           timeout=60_000)
    cells = "#ft-report th, #ft-report td"
    assert page.locator(cells).count() >= 6
    assert page.evaluate(SPLIT_WORDS, cells) == []
    # the check sees a split: with the cells breaking anywhere (the old layout) in a narrow column, it finds words
    page.add_style_tag(content="#ft-report td, #ft-report th { word-break: break-all !important; max-width: 3em; }")
    assert page.evaluate(SPLIT_WORDS, cells)
    page.evaluate("() => document.head.lastElementChild.remove()")
    page.get_by_text("Training settings").click()
    set_number(page, "#ft-max-length input[type=number]", 64)
    try:
        page.wait_for_function("() => /longer than 64 tokens/.test(document.querySelector('#ft-report').innerText)",
                               timeout=90_000)
    except Exception:
        raise AssertionError(f"report: {page.locator('#ft-report').inner_text()!r}; max length box: "
                             f"{page.locator('#ft-max-length input[type=number]').input_value()!r}\n"
                             f"{tiny_app.output()[-3000:]}") from None
    assert "512" not in page.locator("#ft-report").inner_text()
    page.get_by_role("tab", name="Synthetic").click()
    assert not is_red(page, "#synth-cancel")
    context.close()


OUTPUT_BOXES = {"Chat": "#export-file", "Questions": "#questions-download", "Fine-tune": "#ft-command",
                "Synthetic": "#synth-download, #synth-flat, #synth-command"}
"""The boxes a tab fills for the user: files to download, a command to copy."""


def box_heights(page, selector) -> list[float]:
    return [box.bounding_box()["height"] for box in page.locator(selector).all()]


def test_output_boxes_stay_small_until_they_hold_something(chromium, tiny_app):
    """An output box with nothing in it yet is a line high (each was a 264-pixel empty area with an
    icon; the file boxes looked like places to drop a file: "Download (CSV, JSON)" under the
    questions, two more and the command's box under the Synthetic tab); once it holds files, it
    shows every one of them in full."""
    context, page = open_app(chromium, tiny_app.url)
    page.set_viewport_size({"width": 1100, "height": 900})
    for tab, selector in OUTPUT_BOXES.items():
        page.get_by_role("tab", name=tab).click()
        if tab == "Chat":
            page.get_by_role("button", name="Share and export").click()
        page.locator(selector).first.wait_for(state="visible", timeout=30_000)
        heights = box_heights(page, selector)
        assert heights and all(h <= 80 for h in heights), (tab, heights)
    page.get_by_role("tab", name="Questions").click()
    passage = Path(__file__).parent / "data" / "passages" / "marathon.txt"
    page.locator("#questions-passage textarea").fill(passage.read_text(encoding="utf-8"))
    page.locator("#questions-generate").click()
    page.locator("#questions-download a[href]").nth(1).wait_for(timeout=60_000)
    links = page.locator("#questions-download a[href]").evaluate_all("links => links.map(a => a.href)")
    assert sorted(link.rsplit(".", 1)[-1] for link in links) == ["csv", "json"], links
    box = page.locator("#questions-download").bounding_box()
    for link in page.locator("#questions-download a[href]").all():  # inside the box, not cut off by it
        rect = link.bounding_box()
        assert box["y"] <= rect["y"] and rect["y"] + rect["height"] <= box["y"] + box["height"] + 1, (rect, box)
    context.close()


def test_a_markdown_passage_is_uploaded_as_its_text(chromium, tiny_app, tmp_path):
    """A README-like .md file fills the passage box with the text a reader sees: no **, # or link
    targets for the questions to quote (the box held the raw Markdown)."""
    from test_questions import README_MD

    path = tmp_path / "tower.md"
    path.write_text(README_MD, encoding="utf-8")
    context, page = open_app(chromium, tiny_app.url)
    page.get_by_role("tab", name="Questions").click()
    page.locator("#questions-file input[type=file]").set_input_files(str(path))
    page.wait_for_function("() => document.querySelector('#questions-passage textarea').value.includes('lattice')",
                           timeout=30_000)
    passage = page.locator("#questions-passage textarea").input_value()
    assert passage.startswith("The Eiffel Tower\n\nThe Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars")
    assert not any(mark in passage for mark in ("**", "# ", "](", "```", "|")), passage
    page.wait_for_function("() => /Markdown formatting left out/.test(document.querySelector('#questions-status').innerText)",
                           timeout=10_000)
    context.close()


def accepted_suffixes(page, picker: str) -> set[str]:
    """The suffixes a file picker (its elem id) offers."""
    accepted = page.locator(f"{picker} input[type=file]").get_attribute("accept") or ""
    return {suffix.strip() for suffix in accepted.split(",") if suffix.strip()}


def upload_and_plan(page, path: Path, shown: str, screenshot: Path) -> tuple[str, dict[str, str]]:
    """Upload ``path`` as the Fine-tune tab's training data; once its report says ``shown`` and the plan
    is there, the report's text and counts (the page is photographed to ``screenshot``)."""
    page.locator("#ft-upload input[type=file]").set_input_files(str(path))
    page.wait_for_function(f"() => /{shown}/i.test(document.querySelector('#ft-report').innerText)", timeout=60_000)
    report = page.locator("#ft-report").inner_text()
    page.wait_for_function("() => /Planned: /.test(document.querySelector('#ft-plan').innerText)", timeout=30_000)
    page.screenshot(path=str(screenshot), full_page=True)
    return report, report_counts(report)


def report_counts(report: str) -> dict[str, str]:
    """The Fine-tune report's counts table, as the page's text shows it ("passages" -> "2")."""
    return dict(line.split("\t")[:2] for line in report.splitlines() if line.count("\t") >= 1)


def upload_training_file(chromium, url: str, path: Path, suffixes: set[str], shown: str, screenshot: Path):
    """The app opened on the Fine-tune tab, whose two pickers must offer ``suffixes``, and ``path`` uploaded
    and planned (``upload_and_plan``): ``(context, page, report, counts)``."""
    context, page = open_app(chromium, url)
    page.get_by_role("tab", name="Fine-tune").click()
    for picker in ("#ft-upload", "#ft-val-upload"):
        assert suffixes <= accepted_suffixes(page, picker), picker
    return (context, page, *upload_and_plan(page, path, shown, screenshot))


def upload_seeds(page, path: Path, seeds_start: str) -> str:
    """``path`` uploaded as the Synthetic tab's seed file (its picker must offer the suffix); the seed
    box's text once it starts with ``seeds_start``."""
    page.get_by_role("tab", name="Synthetic").click()
    assert path.suffix in accepted_suffixes(page, "#synth-seed-file")
    page.locator("#synth-seed-file input[type=file]").set_input_files(str(path))
    page.wait_for_function(f"() => document.querySelector('#synth-seeds textarea').value.startsWith("
                           f"{json.dumps(seeds_start)})", timeout=30_000)
    return page.locator("#synth-seeds textarea").input_value()


def test_seed_files_pandas_wrote_give_their_seeds_one_a_line(chromium, tiny_app, tmp_path):
    """Seeds a user keeps in a pandas DataFrame, saved as pandas saves them: ``to_csv`` and ``to_excel``
    write the index first (the box got "0", "1", "2"), and a seed with a line break was two seeds in
    the box. A file with no seeds says so and leaves the box and an empty picker."""
    import pandas as pd

    frame = pd.DataFrame({"utterance": ["Hi there.\nI have a question about taxes.", "Why is the sky blue?"]})
    frame.to_csv(tmp_path / "seeds.csv")
    frame.to_excel(tmp_path / "seeds.xlsx")
    context, page = open_app(chromium, tiny_app.url)
    want = "Hi there. I have a question about taxes.\nWhy is the sky blue?"
    assert upload_seeds(page, tmp_path / "seeds.csv", "Hi there.") == want
    page.locator("#synth-seeds textarea").fill("")
    page.locator("#synth-seed-file").get_by_role("button", name="Clear").click()
    assert upload_seeds(page, tmp_path / "seeds.xlsx", "Hi there.") == want
    (tmp_path / "numbers.jsonl").write_text('{"seed": 1}\n')
    page.locator("#synth-seed-file").get_by_role("button", name="Clear").click()
    page.locator("#synth-seed-file input[type=file]").set_input_files(str(tmp_path / "numbers.jsonl"))
    page.get_by_text('numbers.jsonl line 1: "seed" holds int 1').first.wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    assert page.locator("#synth-seeds textarea").input_value() == want
    assert "numbers.jsonl" not in page.locator("#synth-seed-file").inner_text()
    context.close()


def test_the_passage_box_names_every_format_the_picker_takes(chromium, tiny_app):
    """The passage box and the empty-passage message said ".txt or .md" after the picker took web pages,
    PDFs and Word files too (a new user read it as the whole list)."""
    context, page = open_app(chromium, tiny_app.url)
    page.get_by_role("tab", name="Questions").click()
    placeholder = page.locator("#questions-passage textarea").get_attribute("placeholder")
    page.locator("#questions-generate").click()
    page.wait_for_function("() => /passage is empty/.test(document.querySelector('#questions-status').innerText)",
                           timeout=30_000)
    status = page.locator("#questions-status").inner_text()
    for suffix in (".txt", ".md", ".html", ".pdf", ".docx"):
        assert suffix in placeholder and suffix in status, (suffix, placeholder, status)
    context.close()


@pytest.mark.parametrize("name", ["passages.pdf", "passages.docx", "honeybee.html"])
def test_a_document_passage_is_uploaded_as_its_text(chromium, tiny_app, tmp_path, name):
    """A PDF (printed by Chromium), a Word file and a saved web page fill the passage box with the text
    a reader sees, and questions come from it (the tab took .txt and .md only: the file picker hid
    these, and a PDF given anyway was "a binary file")."""
    path = Path(__file__).parent / "data" / "passages" / "documents" / name
    context, page = open_app(chromium, tiny_app.url)
    page.get_by_role("tab", name="Questions").click()
    assert path.suffix in accepted_suffixes(page, "#questions-file")  # the file picker offers it
    page.locator("#questions-file input[type=file]").set_input_files(str(path))
    page.wait_for_function("() => document.querySelector('#questions-passage textarea').value.includes('waggle dance')",
                           timeout=30_000)
    passage = page.locator("#questions-passage textarea").input_value()
    assert "A forager that finds a rich patch of flowers returns to the hive" in passage
    assert not re.search(r"Page \d of|\[\d\]|\[edit\]|Jump to content|%PDF|<p>|word/document", passage), passage[:500]
    page.wait_for_function(f"() => /^Loaded {re.escape(name)}: [\\d,]+ words \\(/.test("
                           "document.querySelector('#questions-status').innerText)", timeout=10_000)
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    page.locator("#questions-generate").click()
    page.locator("#questions-table [data-testid='cell-0-1']").wait_for(timeout=120_000)
    context.close()


def test_a_parquet_file_as_the_hub_stores_it_is_reported_and_planned(chromium, tiny_app, tmp_path):
    """``stanfordnlp/coqa`` as downloaded from the Hub is Parquet: the file picker did not offer it, and
    given anyway it was "file looks binary, not JSON text". Its rows are read as CoQA passages; a
    Parquet file of prompts gives the Synthetic tab its seeds."""
    path = Path(__file__).parent / "data" / "good" / "coqa_hf.parquet"
    context, page, report, rows = upload_training_file(chromium, tiny_app.url, path, {".parquet"}, "passages",
                                                       tmp_path / "parquet.png")
    assert "coqa_hf.parquet" in report and "CoQA" in report and "binary" not in report, report
    assert rows.get("passages") == "2" and rows.get("questions") == "7", report
    # the Synthetic tab's seeds: a Hub dataset of prompts, as downloaded
    import pyarrow as pa
    import pyarrow.parquet as pq

    seeds = tmp_path / "prompts.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "Why is the sky blue?"}, {"prompt": "How do bees talk?"}]), seeds)
    assert upload_seeds(page, seeds, "Why is the sky blue?") == "Why is the sky blue?\nHow do bees talk?"
    context.close()


def test_a_spreadsheets_csv_is_reported_and_planned(chromium, tiny_app, tmp_path):
    """Questions and answers kept in a spreadsheet: Excel's CSV (";" between cells in many locales, a
    byte-order mark, a cell with a line break) was not offered by the file picker, and given anyway it
    was "invalid JSON". Its rows are read as Alpaca examples, and the plan follows."""
    path = Path(__file__).parent / "data" / "good" / "alpaca_excel.csv"
    context, page, report, rows = upload_training_file(chromium, tiny_app.url, path, {".csv", ".tsv"}, "conversations",
                                                       tmp_path / "csv.png")
    assert "alpaca_excel.csv" in report and "Alpaca" in report and "JSON" not in report, report
    assert rows.get("conversations") == "3" and rows.get("messages") == "6", report
    # a table of other columns: said once, in a table's words (it was every JSON layout, then the same
    # paragraph again under "Faults")
    page.locator("#ft-upload").get_by_role("button", name="Clear").click()
    page.locator("#ft-upload input[type=file]").set_input_files(str(Path(__file__).parent / "data" / "bad" / "cities.csv"))
    page.wait_for_function("() => /unrecognised columns/.test(document.querySelector('#ft-report').innerText)",
                           timeout=60_000)
    report = page.locator("#ft-report").inner_text()
    assert report.count('unrecognised columns "city", "population"') == 1 and "Faults" not in report, report
    assert "CoQA" not in report and "JSON" not in report, report
    context.close()


def test_an_excel_workbook_is_reported_and_planned_and_gives_seeds(chromium, tiny_app, tmp_path):
    """An FAQ kept in Excel (a title above the table, an answer that is a number): the pickers did not
    offer .xlsx, and given anyway it was "an office document, not training data". Its first sheet is
    read as its CSV export is, the plan follows, and the Synthetic tab takes its questions as seeds."""
    path = Path(__file__).parent / "data" / "good" / "faq_sheet.xlsx"
    context, page, report, rows = upload_training_file(chromium, tiny_app.url, path, {".xlsx"}, "conversations",
                                                       tmp_path / "xlsx.png")
    assert "faq_sheet.xlsx" in report and "prompt/completion" in report and "office" not in report, report
    assert rows.get("conversations") == "4" and rows.get("messages") == "8", report
    assert upload_seeds(page, path, "When does the library open?").splitlines() == [
        "When does the library open?", "How many books can I borrow?", "When did the new wing open?", "Is there wifi?"]
    context.close()


def test_a_gzipped_jsonl_file_is_reported_and_planned(chromium, tiny_app, tmp_path):
    """``train.jsonl.gz``, as some Hub datasets keep a split: the pickers did not offer .gz, and given
    anyway it was "file looks binary, not JSON text"."""
    import subprocess

    path = tmp_path / "chat.jsonl"
    path.write_bytes((Path(__file__).parent / "data" / "good" / "chat.jsonl").read_bytes())
    subprocess.run(["gzip", "-9", str(path)], check=True)  # chat.jsonl.gz, as the gzip tool writes it
    context, page, report, rows = upload_training_file(chromium, tiny_app.url, tmp_path / "chat.jsonl.gz", {".gz"},
                                                       "conversations", tmp_path / "gz.png")
    assert "chat.jsonl.gz" in report and "binary" not in report, report
    assert rows.get("conversations") == "3" and rows.get("messages") == "12", report
    context.close()


def test_an_arrow_file_that_datasets_saved_is_reported_and_planned_and_gives_seeds(chromium, tiny_app, tmp_path):
    """A dataset kept with ``datasets``' ``save_to_disk``: its ``data-00000-of-00001.arrow`` is what a user
    uploads. The pickers did not offer .arrow, and given anyway it was "file looks binary, not JSON text".
    Its rows are read as the chat JSONL it was made from, and the Synthetic tab takes its first user
    messages as seeds."""
    path = Path(__file__).parent / "data" / "saved" / "chat" / "data-00000-of-00001.arrow"
    context, page, report, rows = upload_training_file(chromium, tiny_app.url, path, {".arrow"}, "conversations",
                                                       tmp_path / "arrow.png")
    assert "data-00000-of-00001.arrow" in report and "chat JSONL" in report and "binary" not in report, report
    assert rows.get("conversations") == "3" and rows.get("messages") == "12", report
    seeds = upload_seeds(page, path, "I just got back from a week of hiking in Scotland.")
    assert len(seeds.splitlines()) == 3, seeds
    context.close()


def test_a_hub_datasets_training_file_is_fetched_into_the_report(chromium, launch, tiny_causal, tmp_path):
    """A user with internet types ``stanfordnlp/coqa``: its train split's Parquet file (from a local Hub
    that the real huggingface_hub client talks to) is fetched into the upload box, and the report and
    the plan follow; a dataset that is not there says so beside the box and leaves the upload alone."""
    try:
        from hub_server import FakeHub
    except ImportError:  # pragma: no cover
        from tests.hub_server import FakeHub

    data = Path(__file__).parent / "data" / "good"
    with FakeHub({}) as hub:
        hub.add_repo("stanfordnlp/coqa", {"README.md": "# CoQA",
                                          "data/train-00000-of-00001.parquet": (data / "coqa_hf.parquet").read_bytes(),
                                          "data/validation-00000-of-00001.parquet": (data / "coqa_hf.parquet").read_bytes()},
                     repo_type="dataset")
        app = launch(model=tiny_causal, data_dir=tmp_path / "data", HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0")
        context, page = open_app(chromium, app.url)
        page.get_by_role("tab", name="Fine-tune").click()
        page.locator("#ft-hub-data input, #ft-hub-data textarea").first.fill("stanfordnlp/nothing")
        page.locator("#ft-hub-fetch").click()
        page.wait_for_function("() => /Could not fetch it/.test(document.querySelector('#ft-hub-status').innerText)",
                               timeout=30_000)
        assert "Repository stanfordnlp/nothing was not found" in page.locator("#ft-hub-status").inner_text()
        page.locator("#ft-hub-data input, #ft-hub-data textarea").first.fill("stanfordnlp/coqa")
        page.locator("#ft-hub-fetch").click()
        page.wait_for_function("() => /passages/i.test(document.querySelector('#ft-report').innerText)",
                               timeout=60_000)
        report = page.locator("#ft-report").inner_text()
        assert "train-00000-of-00001.parquet" in report and "CoQA" in report, report
        rows = report_counts(report)
        assert rows.get("passages") == "2" and rows.get("questions") == "7", report
        assert page.locator("#ft-hub-status").inner_text().startswith(
            "Fetched train-00000-of-00001.parquet (3.9 kB) and validation-00000-of-00001.parquet (3.9 kB) from the Hub.")
        assert "train-00000-of-00001.parquet" in page.locator("#ft-upload").inner_text().replace("\n", "")
        # the dataset's validation split goes to the validation box, and the report reads it too
        assert "validation-00000-of-00001.parquet" in page.locator("#ft-val-upload").inner_text().replace("\n", "")
        page.wait_for_function("() => /Validation file/.test(document.querySelector('#ft-report').innerText)",
                               timeout=30_000)
        page.wait_for_function("() => /Planned: /.test(document.querySelector('#ft-plan').innerText)", timeout=30_000)
        # and it trains: the job reads the fetched Parquet files
        page.get_by_text("Training settings").click()
        steps = page.locator("#ft-max-steps input")
        steps.fill("2")
        steps.press("Tab")
        page.wait_for_function("() => /Planned: 2 steps/.test(document.querySelector('#ft-plan').innerText)",
                               timeout=30_000)
        page.locator("#ft-start").click()
        page.wait_for_function("() => /Finished/.test(document.querySelector('#ft-status').innerText)", timeout=240_000)
        assert [r.path for r in hub.requests if "/resolve/" in r.path and r.method == "GET"] == [
            f"/datasets/stanfordnlp/coqa/resolve/main/data/{split}-00000-of-00001.parquet"
            for split in ("train", "validation")]
        page.screenshot(path=str(tmp_path / "hub-data.png"), full_page=True)
        context.close()


def test_a_training_file_over_the_upload_cap_is_told_where_it_trains(chromium, tiny_app, tmp_path):
    """Gradio refuses a file over the upload cap with a toast that fades and an upload box that says
    only "Error". The tab states the cap before any upload, and its report (which stays) says where
    such a file trains: the command line reads the official CoQA and SQuAD training sets (30-49 MB)."""
    from convo.data import MAX_BYTES

    path = tmp_path / "coqa-train-v1.0.json"
    story = {"story": "Anna walked to the old mill by the river. " * 20,
             "questions": [{"input_text": "Where did Anna walk?", "turn_id": 1}],
             "answers": [{"input_text": "to the old mill", "span_text": "to the old mill", "turn_id": 1}]}
    with path.open("w") as out:
        out.write('{"version": "1.0", "data": [')
        out.write(",".join([json.dumps(story)] * (MAX_BYTES * 11 // 10 // len(json.dumps(story)))))
        out.write("]}")
    assert path.stat().st_size > MAX_BYTES * 2**20 // 10**6  # over Gradio's cap too (its MB are MiB)
    context, page = open_app(chromium, tiny_app.url)
    page.get_by_role("tab", name="Fine-tune").click()
    assert f"up to {MAX_BYTES // 10**6} MB" in page.locator("#ft-upload").inner_text()
    page.locator("#ft-upload input[type=file]").set_input_files(str(path))
    page.wait_for_selector(".toast-body", timeout=30_000)
    assert "maximum allowed size" in page.locator(".toast-body").first.inner_text()
    page.wait_for_selector(".toast-body", state="detached", timeout=30_000)
    report = page.locator("#ft-report").inner_text()
    assert f"up to {MAX_BYTES // 10**6} MB" in report and "python -m training.finetune --train_data FILE" in report, report
    context.close()
