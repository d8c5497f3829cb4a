"""The app in Chromium (Playwright): chat, suggestions, share links across restarts, isolation."""
import re

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


def open_app(browser, url):
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#chat-input textarea", timeout=60_000)
    return context, page


@pytest.fixture(scope="module")
def tiny_app(launch, tiny_causal):
    return launch(model=tiny_causal)


def test_chat_streams_a_reply(chromium, tiny_app):
    context, page = open_app(chromium, tiny_app.url)
    send(page, "Hello from the browser")
    assert wait_reply(page).strip()
    assert page.locator(USER).first.inner_text().strip() == "Hello from the browser"
    context.close()


def test_two_browsers_never_see_each_others_messages(chromium, tiny_app):
    (ca, a), (cb, b) = open_app(chromium, tiny_app.url), open_app(chromium, tiny_app.url)
    send(a, "secret of alice")
    send(b, "secret of bob")
    wait_reply(a)
    wait_reply(b)
    assert "bob" not in a.locator("#chatbot").inner_text()
    assert "alice" not in b.locator("#chatbot").inner_text()
    ca.close()
    cb.close()


def share_link(page):
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
    original_reply = wait_reply(page)
    link = share_link(page)
    assert re.search(r"\?share=[A-Za-z0-9_-]{22}$", link)

    visitor, view = shared_messages(chromium, link)
    assert "Remember the lighthouse" in view.locator("#share-chatbot").inner_text()
    assert not view.locator("#main-view").is_visible()
    assert not view.locator("#share-chatbot textarea").count()  # read-only: no input on the shared view
    view.locator("#continue").click()
    view.wait_for_selector("#main-view", state="visible")
    assert "Remember the lighthouse" in view.locator("#chatbot").inner_text()
    send(view, "A visitor's new message")
    wait_reply(view, count=2)
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
    page.locator("#suggestion-0").click()
    assert wait_reply(page, count=2, timeout=120_000).strip()
    assert page.locator(USER).nth(1).inner_text().strip() == suggestions[0]
    context.close()


def test_finetune_tab_uploads_reports_trains_and_plots(chromium, launch, tiny_causal, tmp_path_factory):
    from pathlib import Path

    coqa = Path(__file__).parent / "data" / "good" / "coqa.json"
    app = launch(model=tiny_causal, data_dir=tmp_path_factory.mktemp("ft-data"))
    context, page = open_app(chromium, app.url)
    page.get_by_role("tab", name="Fine-tune").click()
    page.locator("#ft-upload input[type=file]").set_input_files(str(coqa))
    page.wait_for_function("() => /passages/i.test(document.querySelector('#ft-report').innerText)", timeout=60_000)
    report = page.locator("#ft-report").inner_text()
    assert "3" in report and "16" in report  # 3 stories, 16 questions in the file
    page.get_by_text("Training settings").click()
    page.locator("#ft-name input, #ft-name textarea").first.fill("browser-adapter")
    steps = page.locator("#ft-max-steps input")
    steps.fill("4")
    steps.press("Tab")
    page.locator("#ft-start").click()
    page.wait_for_function("() => /Finished/.test(document.querySelector('#ft-status').innerText)", timeout=240_000)
    assert page.locator("#ft-loss-plot canvas, #ft-loss-plot svg").count() > 0
    assert "python -m training.finetune" in page.locator("#ft-command").inner_text()
    assert (app.data_dir / "adapters" / "browser-adapter" / "adapter_config.json").is_file()
    context.close()
