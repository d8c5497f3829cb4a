"""Generation engine and model loading on tiny random models: streaming, stop, batching, errors."""
import json
import threading
import time
from dataclasses import replace

import pytest

from convo.engine import generation, loops
from convo.engine import ModelLoadError, ModelPool, get_model, load_model
from convo.settings import ModelSpec, Sampling

GREEDY = Sampling(temperature=0, max_new_tokens=12, repetition_penalty=1.0)
HELLO = [{"role": "user", "content": "Hello there"}]
CONVERSATIONS = [HELLO, [{"role": "user", "content": "What is the capital of France and why is it there?"}],
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Birds?"},
                  {"role": "assistant", "content": "They migrate."}, {"role": "user", "content": "Why?"}]]


@pytest.fixture(scope="module")
def causal(tiny_causal):
    return get_model(ModelSpec(tiny_causal, dtype="float32"))


@pytest.fixture(scope="module")
def seq2seq(tiny_seq2seq):
    return get_model(ModelSpec(tiny_seq2seq, dtype="float32"))


def test_stream_arrives_in_several_chunks(causal):
    pieces = list(generation.stream(causal, HELLO, Sampling(max_new_tokens=20, seed=0)))
    assert len(pieces) >= 3
    assert all(isinstance(p, str) for p in pieces)
    assert "".join(pieces).strip()


def test_stop_ends_generation_within_a_few_tokens(causal):
    stop = generation.Stop()
    pieces = []
    for piece in generation.stream(causal, HELLO, Sampling(max_new_tokens=400, temperature=1.0, seed=0), stop=stop):
        pieces.append(piece)
        if len(pieces) == 3:
            stop.set()
    assert 3 <= len(pieces) <= 5


def test_closing_the_stream_stops_the_worker(causal):
    before = threading.active_count()
    iterator = generation.stream(causal, HELLO, Sampling(max_new_tokens=500, temperature=0))
    next(iterator)
    started = time.monotonic()
    iterator.close()
    assert time.monotonic() - started < 2
    assert threading.active_count() <= before


@pytest.mark.parametrize("which", ["causal", "seq2seq"])
def test_batched_greedy_equals_one_by_one(which, request):
    lm = request.getfixturevalue(which)
    batched = generation.generate_batch(lm, CONVERSATIONS, GREEDY, batch_size=3)
    single = [generation.generate(lm, c, GREEDY) for c in CONVERSATIONS]
    assert batched == single
    assert all(reply for reply in batched)


def echo_program(lm, conversation, steps):
    """A multi-step program: each step asks for a reply to the conversation so far, then extends it."""
    conversation = list(conversation)
    for _ in range(steps):
        [reply] = yield [generation.render_prompt(lm, conversation)]
        conversation += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And then?"}]
    return conversation


@pytest.mark.parametrize("which, fast", [("causal", "1"), ("causal", "0"), ("seq2seq", "1")],
                         ids=["engine", "padded", "seq2seq"])
def test_pipeline_refills_and_equals_one_by_one(which, fast, request, monkeypatch):
    """Programs of different lengths, two at a time, new ones started as others end: each gets the
    same result as when run alone (greedy, fp32), whether on the engine or in padded batches."""
    monkeypatch.setenv("CONVO_FAST", fast)
    lm = request.getfixturevalue(which)
    plan = [(c, steps) for c, steps in zip(CONVERSATIONS * 2, [3, 1, 2, 1, 3, 2])]
    handed, order = iter(enumerate(plan)), []

    def source():
        index, (conversation, steps) = next(handed, (None, (None, 0)))
        return None if index is None else (index, echo_program(lm, conversation, steps))

    for finished in generation.pipeline(lm, source, GREEDY, width=2):
        order.append((finished.key, finished.value))
    assert sorted(key for key, _ in order) == list(range(6))
    assert [key for key, _ in order] != list(range(6))  # short ones overtook long ones
    for key, value in order:
        conversation, steps = plan[key]
        alone = iter([(key, echo_program(lm, conversation, steps))])
        [again] = generation.pipeline(lm, lambda: next(alone, None), GREEDY, width=1)
        assert value == again.value
        assert len(value) == len(conversation) + 2 * steps


def test_pipeline_stop_hands_no_cut_reply_to_a_program(causal):
    stop, replies = generation.Stop(), []

    def program(i):
        reply = yield [generation.render_prompt(causal, HELLO)]
        replies.append(reply)
        stop.set()
        yield [generation.render_prompt(causal, HELLO + [{"role": "assistant", "content": "x"}])]
        raise AssertionError("a reply after Stop reached the program")

    programs = iter([(i, program(i)) for i in range(4)])
    sampling = Sampling(max_new_tokens=50, temperature=1.0, seed=0)
    finished = list(generation.pipeline(causal, lambda: next(programs, None), sampling, width=2, stop=stop))
    assert finished == [] and 1 <= len(replies) <= 2


def test_steered_prompts_name_their_word_on_the_engine(causal):
    """A program's Steered prompt (a keyword conversation's line) is answered with its word far more
    often than the same prompt unsteered (the engine raises the word's first tokens until it is named)."""
    prompt = generation.render_prompt(causal, HELLO)
    sampling = Sampling(max_new_tokens=12, temperature=0.7, seed=0)
    word = next(w for w in ("the", "there", "what", "capital", "birds")
                if generation.favoured_ids(causal.tokenizer, (w,)))

    def named(steer: bool) -> int:
        def program(i):
            [reply] = yield [generation.Steered(prompt, (word,)) if steer else prompt]
            return word in reply.lower()

        programs = iter([(i, program(i)) for i in range(8)])
        return sum(f.value for f in generation.pipeline(causal, lambda: next(programs, None), sampling, width=4))

    assert named(steer=True) >= 7 and named(steer=False) <= 3


def a_stop_from_the_middle(text: str) -> str:
    """Three characters from the middle of ``text``, without whitespace at their ends, to stop at."""
    start = len(text) // 2
    while text[start:start + 3] != text[start:start + 3].strip():
        start += 1
    return text[start:start + 3]


@pytest.mark.parametrize("which, fast", [("causal", "1"), ("causal", "0"), ("seq2seq", "1")],
                         ids=["engine", "padded", "seq2seq"])
def test_stop_strings_cut_replies_streams_and_pipelines(which, fast, request, monkeypatch):
    """With ``Sampling.stop`` every reply ends before the first occurrence of any stop string: batched, alone,
    streamed (no text past it is ever shown) and in a pipeline. The stops are taken from what the model writes
    without them (sampled with a fixed seed: the tiny model's greedy text repeats one token)."""
    monkeypatch.setenv("CONVO_FAST", fast)
    lm = request.getfixturevalue(which)
    sampling = Sampling(temperature=1.0, max_new_tokens=24, seed=0)

    def piped(sampling):
        handed = iter(enumerate(CONVERSATIONS))

        def source():
            key, conversation = next(handed, (None, None))
            return None if key is None else (key, echo_program(lm, conversation, 1))

        done = sorted((f.key, f.value[-2]["content"]) for f in generation.pipeline(lm, source, sampling, width=3))
        return [reply for _, reply in done]

    batch, alone, pipe = (generation.generate_batch(lm, CONVERSATIONS, sampling),
                          generation.generate(lm, CONVERSATIONS[0], sampling), piped(sampling))
    stops = (a_stop_from_the_middle(batch[1]), a_stop_from_the_middle(alone), a_stop_from_the_middle(pipe[2]))
    stopped = replace(sampling, stop=stops)

    def cut(texts):
        return [generation.cut_at_stop(text, stops).strip() for text in texts]

    assert all(len(c) < len(t) for c, t in zip(cut([batch[1], alone, pipe[2]]), [batch[1], alone, pipe[2]]))
    assert generation.generate_batch(lm, CONVERSATIONS, stopped) == cut(batch)
    steps = []  # forwards of the padded path (the engine's end at a stop is tested in test_fastpath.py)
    hook = lm.model.register_forward_hook(lambda *args: steps.append(1))
    try:
        assert generation.generate(lm, CONVERSATIONS[0], stopped) == cut([alone])[0]
    finally:
        hook.remove()
    if generation._engine(lm) is None:  # generate ended the row at the stop string
        assert 0 < len(steps) < sampling.max_new_tokens
    assert "".join(generation.stream(lm, CONVERSATIONS[0], stopped)).strip() == cut([alone])[0]
    assert piped(stopped) == cut(pipe)


def test_stream_holds_back_what_could_start_a_stop_string():
    pieces = iter(["Rain falls", ".", " U", "S", "ER: more", "never read"])
    assert list(generation.until_stop(pieces, ["USER:"])) == ["Rain falls", ".", " "]
    assert next(pieces) == "never read"  # nothing is read past the stop string
    assert list(generation.until_stop(["Rain. U", "S", "!"], ["USER:"])) == ["Rain. ", "US!"]


def test_seq2seq_streams_and_uses_history(seq2seq):
    assert generation.render_prompt(seq2seq, CONVERSATIONS[2]) == "system: Be brief.\nuser: Birds?\nassistant: They migrate.\nuser: Why?"
    assert "".join(generation.stream(seq2seq, HELLO, GREEDY)).strip()


def test_chat_template_and_fallback(causal, tiny_causal):
    assert generation.render_prompt(causal, HELLO) == "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"
    no_template = load_model(ModelSpec(tiny_causal, dtype="float32"))
    no_template.tokenizer.chat_template = None
    assert generation.render_prompt(no_template, CONVERSATIONS[2][1:]) == "Birds?<|endoftext|>They migrate.<|endoftext|>Why?<|endoftext|>"
    assert generation.generate(no_template, HELLO, GREEDY)


def test_long_prompt_is_truncated_not_an_error(causal):
    long = [{"role": "user", "content": "word " * 3000}]
    assert generation.generate(causal, long, GREEDY)


def test_continuation_logprobs_prefer_likely_text(causal):
    prompt = generation.render_prompt(causal, HELLO)
    likely = generation.generate(causal, HELLO, GREEDY)
    scores = generation.continuation_logprobs(causal, prompt, [likely, "zebra quantum 1789 ??"])
    assert scores[0] > scores[1]


def test_bad_messages_are_named():
    with pytest.raises(ValueError, match=r"messages\[1\]\.role: expected system, user or assistant, got 'bot'"):
        generation.check_messages([{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}])


def test_sampling_validation():
    with pytest.raises(ValueError, match="temperature must be in"):
        Sampling(temperature=-1)
    assert Sampling.from_dict({"temperature": 0, "unknown": 1}).do_sample is False


def test_stop_strings_are_validated_and_saved_as_json():
    assert Sampling(stop=["\n", "USER:"]).stop == ("\n", "USER:")
    assert Sampling.from_dict(json.loads(json.dumps(Sampling(stop=("END",)).to_dict()))) == Sampling(stop=("END",))
    for bad, message in [([""], "stop strings must be non-empty strings, got ''$"),
                         (["ok", 3], "stop strings must be non-empty strings, got 3$"),
                         (["a"] * 5, "stop takes at most 4 strings, got 5"),
                         ("END", "stop must be a list of strings, got 'END'")]:
        with pytest.raises(ValueError, match=message):
            Sampling(stop=bad)


def test_pool_shares_one_copy_across_threads(tiny_causal):
    pool = ModelPool(budget_bytes=10**12)
    spec = ModelSpec(tiny_causal, dtype="float32")
    results = []
    threads = [threading.Thread(target=lambda: results.append(pool.get(spec))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in results}) == 1


def test_pool_evicts_least_recently_used(tiny_causal, tiny_seq2seq):
    a, b = ModelSpec(tiny_causal, dtype="float32"), ModelSpec(tiny_seq2seq, dtype="float32")
    pool = ModelPool(budget_bytes=1)  # room for one model at a time
    pool.get(a)
    pool.get(b)
    assert pool.loaded() == [b]


def test_unknown_model_is_one_clear_error_offline():
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelSpec("no-such-org/no-such-model-xyz"))
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert message.startswith("Could not load model 'no-such-org/no-such-model-xyz'")
    assert "\n" not in message


def test_a_mistyped_adapter_folder_is_named_as_a_folder(tiny_causal, tmp_path):
    """"./nope" was sent to the Hub and came back as huggingface_hub's "Repo id must use alphanumeric chars"."""
    with pytest.raises(ModelLoadError, match=r"adapter '\./nope': no such folder here, and it is no Hub id"):
        load_model(ModelSpec(tiny_causal, adapter="./nope"))


def test_folder_without_config_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match="the folder has no config.json"):
        load_model(ModelSpec(str(tmp_path)))


def test_unsupported_architecture(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "not-a-real-arch"}')
    with pytest.raises(ModelLoadError, match="not supported"):
        load_model(ModelSpec(str(tmp_path)))


def test_4bit_nf4_loads_and_generates_on_cpu(tiny_causal):
    lm = load_model(ModelSpec(tiny_causal, quantize="4bit", dtype="float32"))
    assert lm.quantized == "4bit"
    assert any("4bit" in type(m).__name__ for m in lm.model.modules())
    assert generation.generate(lm, HELLO, GREEDY)


def test_generate_batch_stops_when_asked(causal):
    stop = generation.Stop()
    stop.set()
    replies = generation.generate_batch(causal, CONVERSATIONS, Sampling(max_new_tokens=200, temperature=0), stop=stop)
    assert all(len(r.split()) <= 3 for r in replies)


def test_run_in_fresh_thread_returns_and_raises_in_the_caller():
    import threading

    from convo.threads import run_in_fresh_thread

    caller = threading.get_ident()
    assert run_in_fresh_thread(threading.get_ident) != caller
    with pytest.raises(KeyError, match="missing"):
        run_in_fresh_thread(lambda: {}["missing"])


def test_coalesce_sends_the_first_at_once_the_last_always_and_few_between():
    import time

    from convo.engine.generation import coalesce

    def slow(n, every):
        for i in range(n):
            time.sleep(every)
            yield i

    sent = list(coalesce(slow(40, 0.005), 0.05))
    assert sent[0] == 0 and sent[-1] == 39 and 3 <= len(sent) <= 10
    assert list(coalesce(iter(range(5)), 0.0)) == [0, 1, 2, 3, 4]
    assert list(coalesce(iter([]), 1.0)) == []


def test_concurrent_chat_replies_share_twenty_redraws_a_second():
    """Each streaming reply's redraw interval follows how many replies stream at once, and a stream
    already running slows down when others start (the interval is asked before each piece)."""
    from convo.engine.generation import coalesce
    from convo.ui import chat as ui_chat

    assert ui_chat.redraw_interval() == ui_chat.UPDATE_EVERY_S
    with ui_chat._counted_stream(), ui_chat._counted_stream(), ui_chat._counted_stream():
        assert ui_chat.redraw_interval() == pytest.approx(3 * ui_chat.UPDATE_EVERY_S)
    assert ui_chat.redraw_interval() == ui_chat.UPDATE_EVERY_S
    with pytest.raises(RuntimeError):  # a failed stream is counted out too
        with ui_chat._counted_stream():
            raise RuntimeError("boom")
    assert ui_chat._streaming == 0

    interval = [0.0]

    def states():
        for i in range(6):
            if i == 2:
                interval[0] = 60.0  # others started streaming
            yield i

    assert list(coalesce(states(), lambda: interval[0])) == [0, 1, 5]


def test_two_loads_at_once_in_a_fresh_process_both_succeed(tiny_causal):
    """The app preloads the default model while a Load click (other settings) or a second session
    loads another: two loads at once. Unserialized, a fresh process failed in 4 of 6 tries (transformers
    imported by two threads at once: a partially initialized module; its meta-device initialization
    is process-wide: "Cannot copy out of meta tensor"). Three rounds, the first with nothing imported."""
    import subprocess
    import sys

    script = f"""
import threading
from convo.engine import load_model
from convo.settings import ModelSpec
for round in range(3):
    errors, done = [], []
    def go(spec):
        try:
            done.append(load_model(spec).model.dtype)
        except Exception as exc:
            errors.append(repr(exc)[:300])
    threads = [threading.Thread(target=go, args=(ModelSpec({tiny_causal!r}, dtype=d),)) for d in ("float32", "bfloat16")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(done) == 2, (round, errors)
print("both loaded", sorted(map(str, done)))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "both loaded ['torch.bfloat16', 'torch.float32']" in result.stdout, result.stdout


def test_continuation_scores_run_the_prompt_once_and_equal_one_pass_per_row(causal, monkeypatch):
    """Without the fast engine (a GPU, an adapter, CONVO_FAST=0) the model's own forward scores: the
    prompt once, then every continuation after its cached keys and values. The scores equal one full
    pass over prompt + continuation per row, the way it was done before."""
    import torch

    monkeypatch.setenv("CONVO_FAST", "0")
    tok = causal.tokenizer
    prompt = generation.render_prompt(causal, [{"role": "user", "content": "Tell me about the old mill by the river"}])
    texts = ["What did the miller grind?", "Why?", "How old is the mill by the river, and who built it?"]
    seen = []
    forward = causal.model.forward
    monkeypatch.setattr(causal.model, "forward", lambda *a, **k: seen.append(tuple(k["input_ids"].shape)) or forward(*a, **k))
    got = generation.continuation_logprobs(causal, prompt, texts)
    monkeypatch.setattr(causal.model, "forward", forward)
    prompt_ids = tok(prompt, add_special_tokens=False).input_ids
    conts = [tok(t, add_special_tokens=False).input_ids for t in texts]
    assert seen == [(1, len(prompt_ids)), (len(texts), max(len(c) for c in conts))]
    expected = []
    with torch.inference_mode():
        for cont in conts:
            logits = causal.model(input_ids=torch.tensor([prompt_ids + cont])).logits[0, len(prompt_ids) - 1:-1]
            expected.append(float(torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(cont)[:, None]).mean()))
    assert got == pytest.approx(expected, abs=1e-4)
    assert len(set(round(x, 4) for x in got)) == len(texts)  # (the rows are told apart)


def test_seq2seq_scores_encode_the_prompt_once_and_equal_one_pass_per_row(seq2seq, monkeypatch):
    """An encoder-decoder's prompt is its encoder's input: encoded once for all the continuations
    (the encoder sees one row), with the scores of one full pass per row over each continuation
    alone. The tokenizer pads on the left, as generation leaves it: the continuations of different
    lengths are still padded after their tokens (pads before them changed the shorter ones' scores)."""
    import torch

    tok = seq2seq.tokenizer
    tok.padding_side = "left"
    prompt = "generate questions: The old mill by the river ground wheat for the village until 1920."
    texts = ["What did the mill grind?", "Why?", "Until when did the old mill by the river grind wheat?"]
    encoder = seq2seq.model.get_encoder()
    seen = []
    forward = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda *a, **k: seen.append(tuple(k["input_ids"].shape)) or forward(*a, **k))
    got = generation.continuation_logprobs(seq2seq, prompt, texts)
    monkeypatch.setattr(encoder, "forward", forward)
    assert seen == [(1, len(tok(prompt).input_ids))]
    expected = []
    with torch.inference_mode():
        for text in texts:
            labels = tok([text], return_tensors="pt").input_ids
            logits = seq2seq.model(**tok([prompt], return_tensors="pt"), labels=labels).logits[0]
            expected.append(float(torch.log_softmax(logits.float(), -1).gather(1, labels[0][:, None]).mean()))
    assert got == pytest.approx(expected, abs=1e-4)
    assert len(set(round(x, 4) for x in got)) == len(texts)


@pytest.mark.parametrize("text, kept", [
    ("Beagles love to chew. " + "They chew shoes. " * 4, "Beagles love to chew. They chew shoes. "),
    ("I think it is a mix of " + "a mix of " * 8 + "a m", "I think it is a mix of "),
    ("Q: " + "Why is the sky blue, and why does it change at sunset?\n" * 3,
     "Q: Why is the sky blue, and why does it change at sunset?\n"),
])
def test_a_text_that_ends_in_a_loop_keeps_the_repeated_block_once(text, kept):
    assert text[:loops.loop_start(text)] == kept


@pytest.mark.parametrize("text", [
    "ha " * 30,  # a block under 8 characters, however long the run
    "-" * 80,
    "x = [" + "0, " * 40,
    "Sit. Stay. Come. Sit. Stay. Come. Good dog!",  # the repetition does not end the text
    "They chew shoes. They chew shoes. They chew shoes.",  # three copies, under 64 characters
    "```python\n" + "print('Hip hip hooray!')\n" * 4,  # inside a code block
    "Step 1: mix the flour. Step 2: mix the eggs. Step 3: mix the milk. Step 4: mix it all. Step 5: bake.",
])
def test_a_text_that_does_not_end_in_a_loop_is_left_alone(text):
    assert loops.loop_start(text) is None


def test_until_loop_cuts_the_loop_and_closes_the_source():
    """The growing text stops at the first state ending in a loop, cut to one copy, and the source
    (a generation) is closed, not read to its end."""
    read = []

    def growing():
        text = "Dogs like walks. "
        for i in range(1000):
            text += "a mix of "
            read.append(i)
            yield text

    source = growing()
    states = list(loops.until_loop(source))
    assert states[-1] == "Dogs like walks. a mix of"
    assert all(not s.endswith("a mix of a mix of a mix of a mix of a mix of a mix of a mix of a mix of") for s in states)
    assert len(read) < 10 and source.gi_frame is None  # closed: nothing more is generated
