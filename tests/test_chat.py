"""Chat core: follow-up questions, interviewer mode, the terminal CLI, the Python API."""
import os
import subprocess
import sys

import pytest

from convo import ConversationModel, chat, filters
from convo.api import to_messages
from convo.engine import get_model
from convo.settings import ChatSettings, ModelSpec, Sampling

GREEDY = dict(temperature=0, max_new_tokens=10, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def lm(tiny_causal):
    return get_model(ModelSpec(tiny_causal, dtype="float32"))


@pytest.mark.parametrize("question, faults", [
    ("What did you cook last night?", []),
    ("Why?", ["single word"]),
    ("Tell me more about it.", ["not a question"]),
    ("the the the the?", ["repeated-token nonsense"]),
    ("Is it blue?", []),
    ("%%%% $$$ ###?", ["single word", "repeated-token nonsense"]),
    ("What " + "really " * 45 + "happened?", ["too long", "repeated-token nonsense"]),
])
def test_question_filters(question, faults):
    assert filters.question_faults(question) == faults


@pytest.mark.parametrize("question, seen, open_only, faults", [
    ("Is it blue?", [], True, ["yes/no question"]),
    ("Is it blue or red?", [], True, []),
    ("What did you cook last night?", ["what did you cook last night"], False, ["near-duplicate"]),
    ("What did you cook last night?", ["What did you cook, last night?!"], False, ["near-duplicate"]),
    ("What did you eat for dinner?", ["Where do you live?"], False, []),
])
def test_question_filters_with_context(question, seen, open_only, faults):
    assert filters.question_faults(question, seen=seen, open_only=open_only) == faults


def test_extract_questions_from_lists_and_sentences():
    text = "1. What do you like?\n2) Where are you from? Why there?\n- Question 3: How old is it?\n\nThanks."
    assert filters.extract_questions(text) == ["What do you like?", "Where are you from?", "Why there?",
                                               "How old is it?", "Thanks."]
    # stage directions before a question go (the bundled model offered "(laughs) What do you think?")
    text = ("(laughs) What do you think?\n*smiles warmly* [pauses] How was the trip?\nOh! (sighs) Why?\n"
            "2. (grins) Where to?\n*What now?*\n**Who else?**")
    assert filters.extract_questions(text) == ["What do you think?", "How was the trip?", "Why?", "Where to?",
                                               "What now?", "Who else?"]
    # an introduction before a colon goes, and the quote it opened (a chip showed "Here's an additional
    # followup question based on the previous answer: \"What kind of environment do dogs thrive in?");
    # a colon inside a question stays
    text = ("Here's an additional followup question based on the previous answer: \"What kind of environment do "
            "dogs thrive in?\"\nFollow-up question: “Which breed is she?”\nQuick question: what is her name?\n"
            "Your pick: tea or coffee?\nHe said: \"Why not?\" and left. Did you \"train\" her?\n"
            "Have you read 'Dune: Part Two'?")
    assert filters.extract_questions(text) == [
        "What kind of environment do dogs thrive in?", "Which breed is she?", "Quick question: what is her name?",
        "Your pick: tea or coffee?", "Why not?", 'Did you "train" her?', "Have you read 'Dune: Part Two'?"]
    # a multilingual model's questions end with the full-width or the Arabic question mark: they were one
    # line ending in no "?", so a reply's questions were never counted as asked (and suggested again)
    text = "你好！你去过长城吗？那里冷不冷？\nمرحبا! هل زرت مصر؟"
    assert filters.extract_questions(text) == ["你去过长城吗？", "那里冷不冷？", "هل زرت مصر؟"]
    assert chat.asked_questions([{"role": "assistant", "content": text}]) == filters.extract_questions(text)


def test_follow_ups_are_filtered_and_ranked(lm, monkeypatch):
    # A random tiny model writes babble, so feed known candidates through the real filter + ranking path.
    candidates = ["What did you like most about Norway?\nWhy?", "what did you like most about norway?",
                  "Tell me more.", "How long did the hike take?", "the the the the?"]
    monkeypatch.setattr(chat, "generate_batch", lambda lm, convs, sampling, **kw: candidates)
    history = [{"role": "user", "content": "I hiked in Norway."}, {"role": "assistant", "content": "Nice!"}]
    questions = chat.follow_up_questions(lm, history, n=3, asked=["How long did the hike take?"], min_score=None)
    assert [q.text for q in questions] == ["What did you like most about Norway?"]
    assert questions[0].score < 0


def test_follow_ups_below_the_likelihood_floor_are_dropped(lm, monkeypatch):
    candidates = ["What did you like most about Norway?",
                  "How can you make an inanimate object fall off furniture without a rocket-powered dishwasher?"]
    monkeypatch.setattr(chat, "generate_batch", lambda lm, convs, sampling, **kw: candidates)
    # the bundled model's own scores for such a pair (mean log-likelihood per token)
    monkeypatch.setattr(chat, "continuation_logprobs", lambda lm, prompt, qs: [-1.2 if "Norway" in q else -3.6 for q in qs])
    history = [{"role": "user", "content": "I hiked in Norway."}, {"role": "assistant", "content": "Nice!"}]
    assert [q.text for q in chat.follow_up_questions(lm, history, n=3)] == [candidates[0]]


def test_follow_ups_that_name_nothing_come_after_the_others(lm, monkeypatch):
    """The bundled model's likeliest samples were often questions that fit any conversation ("What do
    you think?", "What's your plan?"): they are offered only when too few others are."""
    generic, specific = ["What do you think?", "What's your plan?"], ["How long have you played the cello?",
                                                                      "Which piece are you learning now?"]
    monkeypatch.setattr(chat, "generate_batch", lambda lm, convs, sampling, **kw: ["\n".join(generic + specific)])
    scores = {"What do you think?": -1.2, "What's your plan?": -1.3, specific[0]: -1.9, specific[1]: -2.1}
    monkeypatch.setattr(chat, "continuation_logprobs", lambda lm, prompt, qs: [scores[q] for q in qs])
    history = [{"role": "user", "content": "I'm learning the cello."}, {"role": "assistant", "content": "Lovely!"}]
    assert [q.text for q in chat.follow_up_questions(lm, history, n=2)] == specific
    # with room for them, they come last, each group in the order of its scores
    assert [q.text for q in chat.follow_up_questions(lm, history, n=4)] == specific + generic
    assert [filters.is_generic(q) for q in ("How did it go?", "Can you tell me how it made you feel?",
                                            "What kind of cat did you adopt?", "How was Norway?")] == [True, True, False, False]


def test_questions_all_below_the_likelihood_floor_get_the_next_batches(lm, monkeypatch):
    """After a looping reply the bundled model's samples were questions, but junk: all below the
    floor, and no suggestion was offered (3 of 40 turns; a browser test failed on it). Such a batch
    counts as none: the second batch is drawn, then the batch pre-started with question words."""
    junk = ["Why do shoes love to chew shoes that love to chew shoes?", "Which shoe chews the shoes of shoes?"]
    batches = []

    def draw(lm, conversations, sampling, prompts=None, **kw):
        batches.append("pre-started" if prompts else "plain")
        return junk if prompts is None else ["breed is she?", "old is she?"]

    monkeypatch.setattr(chat, "generate_batch", draw)
    monkeypatch.setattr(chat, "continuation_logprobs", lambda lm, prompt, qs: [-3.6 if "shoe" in q else -1.4 for q in qs])
    history = [{"role": "user", "content": "She is a beagle and she chews shoes."},
               {"role": "assistant", "content": "They love to chew shoes. " * 20}]
    questions = chat.follow_up_questions(lm, history, n=3)
    assert batches == ["plain"] * chat.ROUNDS + ["pre-started"]
    assert [q.text for q in questions] == ["What breed is she?", "How old is she?"]
    assert all(q.score == -1.4 for q in questions)


@pytest.mark.slow
def test_samples_without_a_question_get_a_batch_pre_started_with_question_words(monkeypatch):
    """The bundled model sometimes writes only remarks ("Another great point! ..."): 3 of 20 tries
    after a long answer about puppy training, and the suggestions came back empty (a browser test
    failed on it). A last batch pre-started with question words gives questions."""
    from dataclasses import replace

    lm = get_model(ModelSpec("bundled"))
    real, plain_batches = chat.generate_batch, []

    def remarks_only(lm, conversations, sampling, prompts=None, **kw):
        if prompts is None:  # the model's own samples, as in such a run
            plain_batches.append(len(conversations))
            return ["Another great point! Patience is key."] * len(conversations)
        return real(lm, conversations, sampling, prompts=prompts, **kw)

    monkeypatch.setattr(chat, "generate_batch", remarks_only)
    history = [{"role": "user", "content": "Hi! I just adopted a puppy and I have no idea how to train her."},
               {"role": "assistant", "content": "Congratulations! Start with short sessions, reward good behaviour "
                                                "with treats, and be patient and consistent."}]
    questions = chat.follow_up_questions(lm, history, n=3, sampling=replace(chat.CURIOUS_SAMPLING, seed=0))
    assert plain_batches == [chat.CANDIDATES] * chat.ROUNDS
    assert questions, "no suggestion"
    # (every question comes from the pre-started batch, the only one with any; a reply there may hold a
    # second question of its own after the pre-started one, so not every question starts with an opener)
    for q in questions:
        assert q.text.endswith("?") and len(q.text.split()) > 2, q.text
        assert q.score >= chat.LIKELIHOOD_FLOOR


def test_interviewer_mode_ends_with_a_question(lm, monkeypatch):
    monkeypatch.setattr(chat, "follow_up_questions", lambda *a, **k: [chat.FollowUp("What is your favourite place?", -1.0)])
    replies = list(chat.reply_stream(lm, [{"role": "user", "content": "Hi"}], ChatSettings(interviewer=True),
                                     Sampling(**GREEDY)))
    assert replies[-1].endswith("\n\nWhat is your favourite place?")
    assert len(replies) >= 2


def test_python_api_generate_and_stream(tiny_causal):
    m = ConversationModel.from_pretrained(tiny_causal, dtype="float32")
    out = m.generate(context=["Hello", "Hi, how are you?", "Good, thanks! And you?"], **GREEDY)
    assert [t["role"] for t in out.context] == ["system", "user", "assistant", "user"]
    assert out.responses[0] == "".join(m.stream(["Hello", "Hi, how are you?", "Good, thanks! And you?"], **GREEDY)).strip()


def test_context_formats():
    assert to_messages("Hi") == [{"role": "user", "content": "Hi"}]
    with pytest.raises(ValueError, match=r"messages\[0\]\.role"):
        to_messages([{"role": "robot", "content": "x"}])


def run_cli(args, stdin, env_extra=None, timeout=300):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "convo", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_cli_chat_reads_stdin_and_exits_at_end(tiny_causal):
    result = run_cli(["chat", "--model", tiny_causal, "--max-new-tokens", "8", "--no-questions"], "Hello!\nAgain?\n")
    assert result.returncode == 0, result.stderr
    assert len([l for l in result.stdout.splitlines() if l.strip()]) >= 2


def test_cli_chat_unknown_model_is_a_clear_error():
    result = run_cli(["chat", "--model", "no-such-org/nothing-here"], "Hello!\n")
    assert result.returncode == 2
    assert result.stderr.startswith("error: Could not load model 'no-such-org/nothing-here'")


@pytest.mark.slow
def test_bundled_model_replies_in_english_and_asks():
    result = run_cli(["chat", "--max-new-tokens", "60", "--seed", "0"], "Hello! I just came back from a hiking trip.\n")
    assert result.returncode == 0, result.stderr
    lines = [l for l in result.stdout.splitlines() if l.strip()]
    reply = lines[0]
    assert sum(w in reply.lower().split() for w in ("the", "a", "you", "i", "is", "to", "and", "your", "it")) >= 2
    follow_ups = [l.strip()[2:] for l in lines if l.startswith("  ? ")]
    assert follow_ups and all(q.endswith("?") for q in follow_ups)


@pytest.mark.slow
def test_readme_python_example_runs():
    """The README's 'Use it from Python' block, executed as written."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("<!-- python-example -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    result = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_recommended_sampling_reads_generation_config_and_our_choice_for_the_bundled_model():
    from dataclasses import replace

    from convo.settings import BUNDLED, MODEL_SAMPLING, recommended_sampling

    sampling, source = recommended_sampling("org/model", {"do_sample": True, "temperature": 0.6, "top_p": 0.95,
                                                          "top_k": 20, "repetition_penalty": 1.05})
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.repetition_penalty) == (0.6, 0.95, 20, 1.05)
    assert "generation_config.json" in source
    assert recommended_sampling("org/model", {"bos_token_id": 1})[0] == Sampling()  # nothing recommended
    assert recommended_sampling(BUNDLED)[0] == MODEL_SAMPLING[BUNDLED]
    assert replace(MODEL_SAMPLING[BUNDLED], max_new_tokens=256).temperature <= 0.3


OPENERS = ["Hello! How are you today?", "Hi there, what's up?", "Good morning! Any plans for the weekend?",
           "I just got back from a trip to the mountains.", "Can you recommend a good book?",
           "What's your favourite food?", "I started learning to play the guitar.", "My cat keeps waking me up at night.",
           "Do you like rainy days?", "I'm thinking about changing jobs.", "What should I cook for dinner tonight?",
           "I had a really long day at work.", "Tell me something interesting.", "I'm planning a birthday party for my friend.",
           "How do I stay motivated to exercise?", "We just moved to a new city.", "I love watching old movies.",
           "What's a good way to learn a new language?", "My garden is finally blooming.", "Hey! Nice to meet you."]
ENGLISH_WORDS = set("""the a an i you your to is are and it of in that for what this with be can do have my me we on at
so not but how was it's i'm there here like about would will if or as just all some any really good great nice hello hi
thanks thank sounds""".split())


def looks_english(text: str) -> bool:
    """Offline language check: (almost) only ASCII letters, and common English words make up at
    least 15% of the words (invented Portuguese or Scandinavian has nearly none)."""
    words = [w.strip(".,!?;:\"'()").lower() for w in text.split()]
    words = [w for w in words if w]
    letters = [c for c in text if c.isalpha()]
    if not words or not letters:
        return False
    return sum(c.isascii() for c in letters) / len(letters) >= 0.97 and \
        sum(w in ENGLISH_WORDS for w in words) / len(words) >= 0.15


@pytest.mark.slow
def test_bundled_defaults_answer_english_in_english():
    """Issue 19: with the bundled model's defaults, at least 18 of 20 English openers get English replies.

    Measured on this code (2-core EPYC, 40 tokens, seeds fixed per opener): the new defaults 20/20 on 3 seeds; the
    old ones (temperature 0.7, repetition penalty 1.1) also 20/20 on 3 seeds (and at 120 tokens with curious
    replies, 2 seeds), so the babble reported in the issue no longer shows with these openers. The check itself
    fails on babble: temperature 1.5 (top-p 1, no top-k) gave 5/20, temperature 2.0 gave 0/20."""
    from dataclasses import replace

    from convo.engine.generation import Stop
    from convo.settings import recommended_sampling

    lm = get_model(ModelSpec("bundled"))
    sampling = replace(recommended_sampling("bundled")[0], max_new_tokens=40)
    replies = []
    for opener in OPENERS:
        reply = ""
        for reply in chat.reply_stream(lm, [{"role": "user", "content": opener}], ChatSettings(curious=False),
                                       sampling, Stop()):
            pass
        replies.append(reply)
    english = [looks_english(r) for r in replies]
    assert sum(english) >= 18, [r for r, ok in zip(replies, english) if not ok]


def test_first_chats_at_once_share_one_store(tmp_path, monkeypatch):
    """8 first chats at once each opened a store (``lru_cache`` does not lock), and their switches to
    WAL failed with "database is locked" in a CI run: now the first caller opens the one store."""
    import concurrent.futures

    from convo.ui import common

    monkeypatch.setenv("CONVO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(common, "_store", [])
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        stores = list(pool.map(lambda _: common.get_store(), range(8)))
    assert len({id(s) for s in stores}) == 1 and stores[0].path.parent == tmp_path


def test_reply_updates_are_plain_values_with_the_chips_in_a_state(tiny_causal, tmp_path, monkeypatch):
    """A reply's updates are (conversation, id, questions asked, status, the chips' State) as plain
    values, never a gr.update or gr.skip(): Gradio builds a new component for each of those."""
    from convo.ui import chat as tab, common

    monkeypatch.setenv("CONVO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(common, "_store", [])
    monkeypatch.setattr(tab, "UPDATE_EVERY_S", 0.0)  # an update for every token
    history = [{"role": "user", "content": "Tell me about tea."}]
    updates = list(tab.respond(history, tiny_causal, "(none)", "auto", "", False, False, 0.0, 1.0, 0, 12, 1.0, 0,
                               None, []))
    assert len(updates) >= 4 and all(len(u) == 5 for u in updates)
    assert not [v for u in updates for v in u if isinstance(v, dict) and "__type__" in v]
    assert [u[3] for u in updates[:-1]] == [tab._status(tab.REPLYING, 0)] * (len(updates) - 1)
    # its 12 tokens are all Max new tokens allows: the status says it was cut (it went blank)
    assert updates[-1][3] == tab.CUT["length"]
    assert all(u[4] == tab.chips_value([]) for u in updates)  # not curious: none offered, none shown
    assert updates[-1][0][-1]["role"] == "assistant" and updates[-1][0][-1]["content"]


def test_the_chat_event_hops_no_thread_and_builds_no_component(tiny_causal, tmp_path, monkeypatch):
    """Gradio runs each component's preprocess and postprocess in a worker thread of its own, and
    builds a new component for every update (gr.skip() too): 16 thread hops for a message's inputs,
    and for every streamed update one hop and five components (status, chips), serialized on the
    server's event loop. The chat event processes its values in the handler's own thread instead
    (``processed_here``), with the same results: a slider out of bounds is refused as before."""
    import asyncio

    import anyio.to_thread
    import gradio as gr
    from gradio.components.base import Component
    from gradio.state_holder import SessionState

    from convo.ui import build_app
    from convo.ui import chat as tab, common

    monkeypatch.setenv("CONVO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(common, "_store", [])
    demo = build_app()
    event = next(f for f in demo.fns.values() if f.api_name == "chat")
    counts = {"hops": 0, "components": 0}
    run_sync, init = anyio.to_thread.run_sync, Component.__init__

    async def counted_run_sync(*args, **kwargs):
        counts["hops"] += 1
        return await run_sync(*args, **kwargs)

    def counted_init(self, *args, **kwargs):
        counts["components"] += 1
        init(self, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted_run_sync)
    monkeypatch.setattr(Component, "__init__", counted_init)
    state = SessionState(demo)
    message = [{"role": "user", "content": [{"type": "text", "text": "Tell me about tea."}]}]
    knobs = ["", False, False, 0.0, 1.0, 0, 12, 1.0, 0]

    async def first_update(raw: list) -> tuple[list, list, int]:
        values = await demo.preprocess_data(event, raw, state)
        hops = counts["hops"]
        update = next(event.fn(*values, None, None, None))  # request, profile, OAuth token: none here
        return values, await demo.postprocess_data(event, update, state), hops

    raw = [message, tiny_causal, "(none)", "auto", *knobs, None, None, False, False, None]
    values, sent, hops = asyncio.run(first_update(list(raw)))
    assert (hops, counts["hops"], counts["components"]) == (0, 0, 0)
    assert event.preprocess is False and event.postprocess is False
    assert values[0][0]["role"] == "user" and values[0][0]["content"][0]["text"] == "Tell me about tea."
    conversation = sent[0]  # as Chatbot.postprocess gives it, ready to send
    assert [m["role"] for m in conversation] == ["user", "assistant"]
    assert conversation[0]["content"] == [{"type": "text", "text": "Tell me about tea."}]
    assert sent[3] == tab._status(tab.REPLYING, 0)

    raw[7] = 2.5  # the temperature slider goes to 2: refused with Gradio's own message
    with pytest.raises(gr.Error, match="2.5"):
        asyncio.run(first_update(list(raw)))


def test_a_streamed_reply_sets_each_state_only_when_it_changes(tiny_causal, tmp_path, monkeypatch):
    """Gradio rebuilds a State's config each time an update sets it, and a streamed reply repeats
    its conversation id, questions asked and hidden chips in every update: only a new object is
    set, and the session ends with the reply's last values. A State changed in place is still seen
    by the change check (Gradio hashes it before and after), the skip only saves the rebuild."""
    import asyncio

    from gradio.state_holder import SessionState

    from convo.ui import build_app
    from convo.ui import chat as tab, common

    monkeypatch.setenv("CONVO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(common, "_store", [])
    demo = build_app()
    event = next(f for f in demo.fns.values() if f.api_name == "chat")
    states = [block for block in event.outputs if block.stateful]
    assert len(states) == 3  # conversation id, questions asked, chips
    state = SessionState(demo)
    sets = []
    setitem = SessionState.__setitem__

    def counted(self, key, value):
        if key in {block._id for block in states}:
            sets.append(key)
        setitem(self, key, value)

    monkeypatch.setattr(SessionState, "__setitem__", counted)
    monkeypatch.setattr(tab, "UPDATE_EVERY_S", 0.0)  # an update for every token
    message = [{"role": "user", "content": [{"type": "text", "text": "Tell me about tea."}]}]
    raw = [message, tiny_causal, "(none)", "auto", "", False, False, 0.0, 1.0, 0, 24, 1.0, 0, None, None,
           False, False, None]

    async def every_update() -> list:
        values = await demo.preprocess_data(event, list(raw), state)
        updates = []
        for update in event.fn(*values, None, None, None):  # request, profile, OAuth token: none here
            await demo.postprocess_data(event, update, state)
            updates.append(update)
        return updates

    updates = asyncio.run(every_update())
    assert len(updates) >= 10
    chat_id, asked, chips = (event.outputs.index(block) for block in states)
    sent = [u for u in updates if not (isinstance(u[chat_id], dict) and u[chat_id].get("__type__") == "update")]
    assert len(sent) == 1  # the conversation id: set once, with the first update
    assert sets.count(states[0]._id) == 1
    assert sets.count(states[1]._id) <= 2 and sets.count(states[2]._id) <= 2  # the start and the end
    assert len(sets) <= 5 < 3 * len(updates)
    conversation_id = state[states[0]._id]
    assert conversation_id and common.get_store().load_conversation(conversation_id) is not None
    assert state[states[2]._id] == tab.chips_value([])


def test_a_chat_message_is_announced_to_the_engine_before_its_prompt(tiny_causal, tmp_path, monkeypatch):
    """The chat handler announces its reply to the model's engine on starting (``Engine.arriving``),
    so that an idle engine handed other messages meanwhile waits for it; the announcement ends with
    the submit."""
    import threading

    from convo.engine import fastpath
    from convo.ui import chat as tab, common

    monkeypatch.setenv("CONVO_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(common, "_store", [])
    engine = fastpath.engine_for(get_model(ModelSpec(tiny_causal)))
    assert engine is not None
    seen = []
    submit = fastpath.Engine.submit

    def recorded(self, *args, **kwargs):
        seen.append(threading.get_ident() in self.announced)
        request = submit(self, *args, **kwargs)
        seen.append(threading.get_ident() in self.announced)
        return request

    monkeypatch.setattr(fastpath.Engine, "submit", recorded)
    history = [{"role": "user", "content": "Tell me about tea."}]
    updates = list(tab.respond(history, tiny_causal, "(none)", "auto", "", False, False, 0.0, 1.0, 0, 8, 1.0, 0,
                               None, []))
    assert updates[-1][0][-1]["role"] == "assistant"
    assert seen == [True, False] and not engine.announced


def test_an_app_without_matplotlib_stops_looking_for_it(monkeypatch):
    """Gradio tries to import matplotlib on entering and leaving every event's function; a failed
    import is not remembered, so each searched every folder on sys.path. Settled as absent, the
    import fails at once with the same error."""
    import importlib.machinery
    import importlib.util

    from gradio.utils import MatplotlibBackendMananger

    from convo.ui import settle_missing_matplotlib

    if importlib.util.find_spec("matplotlib") is not None:
        pytest.skip("matplotlib is installed here: Python remembers its import")
    searches = []
    find_spec = importlib.machinery.PathFinder.find_spec
    monkeypatch.setattr(importlib.machinery.PathFinder, "find_spec",
                        classmethod(lambda cls, name, *a, **k: searches.append(name) or find_spec(name, *a, **k)))

    def one_event() -> int:
        before = len(searches)
        with MatplotlibBackendMananger():
            pass
        return searches[before:].count("matplotlib")

    try:
        assert one_event() == 2  # as Gradio runs it: two searches of sys.path per event
        settle_missing_matplotlib()
        assert one_event() == 0
        with pytest.raises(ModuleNotFoundError):
            import matplotlib  # noqa: F401
        assert importlib.util.find_spec("matplotlib") is None
    finally:
        if sys.modules.get("matplotlib", 0) is None:
            del sys.modules["matplotlib"]


def test_a_reply_that_falls_into_a_loop_ends_at_its_first_copy(tiny_causal):
    """The tiny model at a low temperature with no repetition penalty (the bundled model's
    recommended sampling) often repeats one phrase for many tokens. Answered again with the same
    seeds through reply_stream, such a reply ends where its first loop begins, the block kept once:
    it is the beginning of the bare reply, up to where some longer beginning of it loops."""
    from convo.engine import generation
    from convo.engine.loops import loop_start

    lm = get_model(ModelSpec(tiny_causal, dtype="float32"))
    messages = [{"role": "user", "content": "first message"}]
    settings = ChatSettings(curious=False)
    cut = 0
    for seed in range(12):
        sampling = Sampling(temperature=0.2, top_p=0.9, repetition_penalty=1.0, max_new_tokens=300, seed=seed)
        bare = "".join(generation.stream(lm, chat.with_system(messages, settings.system_prompt), sampling))
        whys = []
        guarded = list(chat.reply_stream(lm, messages, settings, sampling, on_cut=whys.append))[-1]
        assert bare.startswith(guarded)
        if guarded == bare:
            assert "loop" not in whys
            continue
        cut += 1
        assert whys == ["loop"]  # the chat's status line says why the reply ended there
        looping = [k for k in range(len(guarded), len(bare) + 1) if loop_start(bare[:k]) is not None]
        assert looping and bare[:loop_start(bare[:looping[0]])].rstrip() == guarded, (guarded[-60:], bare[:200])
        assert loop_start(guarded) is None and len(guarded) < len(bare) - 40
    assert cut >= 2


def test_a_reply_cut_at_the_token_limit_is_told_apart_from_one_that_ended(tiny_causal):
    """on_cut hears "length" when the reply used all of max_new_tokens, and nothing when it ended
    before (here at a stop string, the same greedy reply cut halfway)."""
    lm = get_model(ModelSpec(tiny_causal, dtype="float32"))
    messages = [{"role": "user", "content": "first message"}]
    settings = ChatSettings(curious=False)
    whys = []
    full = list(chat.reply_stream(lm, messages, settings, Sampling(temperature=0.0, max_new_tokens=16),
                                  on_cut=whys.append))[-1]
    assert whys == ["length"] and len(lm.tokenizer(full, add_special_tokens=False).input_ids) >= 15
    stop_at = full[len(full) // 2:len(full) // 2 + 3]
    whys = []
    ended = list(chat.reply_stream(lm, messages, settings, Sampling(temperature=0.0, max_new_tokens=16,
                                                                    stop=(stop_at,)), on_cut=whys.append))
    assert len((ended or [""])[-1]) < len(full) and whys == []
