"""The one place that calls ``model.generate``: streaming, batched, scoring, stop.

Everything yields or returns plain text; callers (chat, questions, synth, the UI) only format it.

>>> from convo.engine import get_model                                   # doctest: +SKIP
>>> "".join(stream(get_model("bundled"), [{"role": "user", "content": "Hi"}]))  # doctest: +SKIP
"""
from __future__ import annotations

import itertools
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from ..settings import Sampling
from ..threads import run_in_fresh_thread
from .loading import LoadedModel
from .programs import (STEER, Finished, Program, Steered, Stop, _advance, _Running, _stopped,  # noqa: F401 (re-exported)
                       cut_at_stop, drive_pipeline, finished_text, sampling_for)
from .prompts import stop_token_ids

Messages = list[dict]
T = TypeVar("T")


def check_messages(messages: Sequence[dict]) -> Messages:
    """Validate ``[{"role", "content"}]`` and return it as a list; raise ValueError naming the fault."""
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{i}]: expected a dict with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}].role: expected system, user or assistant, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content: expected a string, got {type(content).__name__}")
        checked.append({"role": role, "content": content})
    return checked


def render_prompt(lm: LoadedModel, messages: Messages, add_generation_prompt: bool = True) -> str:
    """The text the model sees: its own chat template, or a fallback for models without one.

    Fallbacks: seq2seq models get the history as ``role: text`` lines (the encoder input);
    plain causal LMs get turns joined by the EOS token, as GPT-2 conversation models (DialoGPT)
    were trained.
    """
    if getattr(lm, "remote", False):  # a server applies its own template: keep the messages whole
        from . import remote

        return remote.render_prompt(messages)
    tok = lm.tokenizer
    if lm.is_seq2seq:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    eos = tok.eos_token or "\n"
    text = "".join(m["content"] + eos for m in messages)
    return text


def _encode(lm: LoadedModel, prompts: list[str], max_new_tokens: int):
    """Tokenize left-padded, keeping the most recent tokens when the prompt is too long."""
    tok = lm.tokenizer
    tok.padding_side = "left"
    limit = max(16, lm.context_length - (0 if lm.is_seq2seq else max_new_tokens))
    tok.truncation_side = "left"
    # Chat templates already contain the BOS/special tokens they need.
    add_special = lm.is_seq2seq or not getattr(tok, "chat_template", None)
    batch = tok(prompts, return_tensors="pt", padding=True, truncation=True, max_length=limit,
                add_special_tokens=add_special)
    return {k: v.to(lm.model.device) for k, v in batch.items()}


def _generate_kwargs(lm: LoadedModel, sampling: Sampling) -> dict:
    tok = lm.tokenizer
    kwargs = dict(max_new_tokens=sampling.max_new_tokens, do_sample=sampling.do_sample,
                  repetition_penalty=sampling.repetition_penalty, pad_token_id=tok.pad_token_id)
    if sampling.do_sample:
        kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or None)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    eos = stop_token_ids(lm)
    if eos:
        kwargs["eos_token_id"] = eos
    return kwargs


def close_source(source: Iterable) -> None:
    """Close a generator we read from (its generation ends); other iterables have nothing to close."""
    close = getattr(source, "close", None)
    if close is not None:
        close()


def until_stop(pieces: Iterable[str], stops: Sequence[str]) -> Iterator[str]:
    """Text deltas up to the first stop string. A tail that could be the start of one is held back until
    the next piece tells; once one appears the source is closed (its generation ends).

    >>> list(until_stop(["Rain. U", "p we go"], ["USER:"])), list(until_stop(["Rain. U", "SER: hi"], ["USER:"]))
    (['Rain. ', 'Up we go'], ['Rain. '])
    """
    held = ""
    try:
        for piece in pieces:
            text = held + piece
            cut = cut_at_stop(text, stops)
            if len(cut) < len(text):
                if cut:
                    yield cut
                return
            keep = max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
            held = text[len(text) - keep:] if keep else ""
            if len(text) > keep:
                yield text[:len(text) - keep]
        if held:
            yield held
    finally:
        close_source(pieces)


_PER_TOKENIZER: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _per_tokenizer(tokenizer, key: tuple, make: Callable[[], T]) -> T:
    """``make()``, kept per tokenizer under ``key``: what is built from its whole vocabulary (about 0.2 s
    for the bundled model's 49k tokens) is built once."""
    known = _PER_TOKENIZER.setdefault(tokenizer, {})
    if key not in known:
        known[key] = make()
    return known[key]


def end_ids(tokenizer, stops: tuple[str, ...]) -> frozenset[int]:
    """The tokens whose text holds one of ``stops``: the fast engine ends a request right after one."""
    if not stops:
        return frozenset()

    def scan() -> frozenset[int]:
        texts = (tokenizer.decode([i], skip_special_tokens=True) for i in range(len(tokenizer)))
        return frozenset(i for i, text in enumerate(texts) if any(s in text for s in stops))

    return _per_tokenizer(tokenizer, ("end_ids", stops), scan)


def favoured_ids(tokenizer, words: tuple[str, ...]) -> dict[int, tuple[int, ...]]:
    """The first token of each word, after a space or not, capitalized or not: what a Steered prompt's
    reply is nudged towards; each with the rest of its word (the engine feeds it: " Umb" had gone on to
    "Umbra"; none where two forms differ). One shorter than 3 letters ("B" of "Bicycle") is left out."""
    def scan() -> dict[int, tuple[int, ...]]:
        firsts: dict[int, tuple[int, ...]] = {}
        for word in words:
            for form in {word, word.capitalize(), " " + word, " " + word.capitalize()}:
                ids = tokenizer(form, add_special_tokens=False).input_ids
                if ids and len(tokenizer.decode(ids[:1]).strip()) >= min(3, len(word)):
                    rest = tuple(ids[1:])
                    firsts[ids[0]] = rest if firsts.get(ids[0], rest) == rest else ()
        return dict(sorted(firsts.items()))

    return _per_tokenizer(tokenizer, ("favour", words), scan) if words else {}


def _seed(sampling: Sampling) -> None:
    if sampling.seed is not None:
        import torch

        torch.manual_seed(sampling.seed)


class _StopCriteria:
    """transformers StoppingCriteria that ends generation once any of the given Stops is set."""

    def __init__(self, *stops: Stop):
        self.stops = stops

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        stopped = any(s.is_set() for s in self.stops)
        return torch.full((input_ids.shape[0],), stopped, dtype=torch.bool, device=input_ids.device)


def _stopping(lm: LoadedModel, sampling: Sampling, stops: list[Stop]):
    """generate's stopping criteria: any of ``stops`` set, or (row by row) a stop string of ``sampling``
    written. (Given ``stop_strings``, generate would build its criterion from the vocabulary at every call.)"""
    from transformers import StoppingCriteriaList
    from transformers.generation import StopStringCriteria

    criteria = [_StopCriteria(*stops)]
    if sampling.stop:
        criteria.append(_per_tokenizer(lm.tokenizer, ("criterion", sampling.stop),
                                       lambda: StopStringCriteria(lm.tokenizer, list(sampling.stop))))
    return StoppingCriteriaList(criteria)


def stream(lm: LoadedModel, messages: Messages, sampling: Sampling | None = None,
           stop: Stop | None = None, prompt: str | None = None) -> Iterator[str]:
    """Yield the reply to ``messages`` piece by piece (text deltas) as the model produces them.

    Generation runs on a worker thread feeding a streamer; setting ``stop`` (or closing this
    iterator) ends it within a token or two. The reply ends before the first of ``sampling.stop``.
    """
    sampling = sampling or Sampling()
    stop = stop or Stop()
    if getattr(lm, "remote", False):
        from . import remote

        yield from until_stop(remote.stream(lm, check_messages(messages), sampling, stop, prompt), sampling.stop)
        return
    from transformers import TextIteratorStreamer

    text = prompt if prompt is not None else render_prompt(lm, check_messages(messages))
    engine = _engine(lm)
    if engine is not None:
        yield from until_stop(_stream_engine(lm, engine, text, sampling, stop), sampling.stop)
        return
    inputs = _encode(lm, [text], sampling.max_new_tokens)
    streamer = TextIteratorStreamer(lm.tokenizer, skip_prompt=not lm.is_seq2seq, skip_special_tokens=True,
                                    timeout=None)
    kwargs = _generate_kwargs(lm, sampling)
    abandoned = Stop()  # set when the consumer goes away, without touching the caller's Stop
    kwargs.update(inputs, streamer=streamer, stopping_criteria=_stopping(lm, sampling, [stop, abandoned]))
    errors: list[BaseException] = []

    def work():
        try:
            _seed(sampling)
            import torch

            with torch.inference_mode():
                lm.model.generate(**kwargs)
        except BaseException as exc:  # surfaced to the consumer below
            errors.append(exc)
            streamer.on_finalized_text("", stream_end=True)

    worker = threading.Thread(target=work, name="convo-generate", daemon=True)
    worker.start()
    try:
        for piece in until_stop(streamer, sampling.stop):
            if stop.is_set():
                break
            if piece:
                yield piece
    finally:
        abandoned.set()
        worker.join()
    if errors:
        raise errors[0]


def _engine(lm: LoadedModel):
    """The fast CPU engine for this model, or None (imported lazily: it needs torch)."""
    from .fastpath import engine_for

    return engine_for(lm)


def _prompt_ids(lm: LoadedModel, text: str) -> list[int]:
    add_special = lm.is_seq2seq or not getattr(lm.tokenizer, "chat_template", None)
    return lm.tokenizer(text, add_special_tokens=add_special).input_ids


def _stream_engine(lm: LoadedModel, engine, text: str, sampling: Sampling, stop: Stop) -> Iterator[str]:
    """Stream from the fast engine, detokenizing incrementally (held back while a multi-byte
    character is incomplete)."""
    request = engine.submit(_prompt_ids(lm, text), sampling, stop, end_ids=end_ids(lm.tokenizer, sampling.stop))
    tokens: list[int] = []
    printed = ""
    try:
        for token in request.tokens():
            if stop.is_set():  # tokens already queued when Stop was pressed are not shown
                break
            tokens.append(token)
            decoded = lm.tokenizer.decode(tokens, skip_special_tokens=True)
            if decoded.endswith("\ufffd") or not decoded.startswith(printed):
                continue
            if len(decoded) > len(printed):
                yield decoded[len(printed):]
                printed = decoded
    finally:
        request.stop = _ABANDONED  # the consumer left (or finished): the engine drops it next step


_ABANDONED = Stop()
_ABANDONED.set()


def accumulate(pieces: Iterable[str]) -> Iterator[str]:
    """Text deltas -> the growing text.

    >>> list(accumulate(["Hel", "lo", "!"]))
    ['Hel', 'Hello', 'Hello!']
    """
    text = ""
    try:
        for piece in pieces:
            text += piece
            yield text
    finally:  # closed early (a loop, the consumer gone): so is the source, ending its generation
        close_source(pieces)


def coalesce(states: Iterable[T], min_interval: float | Callable[[], float]) -> Iterator[T]:
    """The latest of a stream of states, at most every ``min_interval`` seconds: the first at once,
    the last always. Each UI update of a streamed chat costs the server about as much as a decode
    step, so redrawing 20 times a second instead of once per token leaves the cores to decoding.
    ``min_interval`` may be a function, asked before each state (an interval that follows the load).

    >>> list(coalesce(iter([1, 2, 3]), 60.0))
    [1, 3]
    >>> list(coalesce(iter([1, 2, 3]), lambda: 0.0))
    [1, 2, 3]
    """
    interval = min_interval if callable(min_interval) else (lambda: min_interval)
    sent_at, pending, has_pending = None, None, False
    for state in states:
        now = time.monotonic()
        if sent_at is None or now - sent_at >= interval():
            sent_at, has_pending = now, False
            yield state
        else:
            pending, has_pending = state, True
    if has_pending:
        yield pending


def generate(lm: LoadedModel, messages: Messages, sampling: Sampling | None = None) -> str:
    """The whole reply to ``messages`` as one string."""
    return generate_batch(lm, [messages], sampling)[0]


def generate_batch(lm: LoadedModel, conversations: Sequence[Messages], sampling: Sampling | None = None,
                   batch_size: int = 16, prompts: Sequence[str] | None = None, stop: Stop | None = None,
                   keep_replies: bool = True) -> list[str]:
    """Replies to many conversations: on the fast CPU engine all of them share decode steps
    (continuous batching); otherwise they run as left-padded batches of ``batch_size``.
    Setting ``stop`` ends the generation early (replies are cut where they were).
    ``keep_replies=False``: no later prompt continues these replies (candidates to filter and rank),
    so the engine's prefix cache does not keep each prompt with its reply (six follow-up candidates
    were six copies of one prompt, pushing other users' conversations out).

    With greedy decoding in fp32 the result equals running them one by one (in bf16 and with
    quantized weights, batched matmuls round differently, so long greedy replies may diverge).
    """
    sampling = sampling or Sampling()
    texts = list(prompts) if prompts is not None else [render_prompt(lm, check_messages(c)) for c in conversations]
    if getattr(lm, "remote", False):  # concurrent requests; the server batches them
        from . import remote

        return remote.generate_batch(lm, texts, sampling, stop)
    engine = _engine(lm)
    if engine is not None:  # continuous batching: all requests share decode steps
        seeds = [None if sampling.seed is None else sampling.seed + i for i in range(len(texts))]
        ends = end_ids(lm.tokenizer, sampling.stop)
        requests = [engine.submit(_prompt_ids(lm, t), replace(sampling, seed=seed), stop, end_ids=ends,
                                  keep=keep_replies) for t, seed in zip(texts, seeds)]
        return [_reply_text(lm, r) for r in requests]
    # on a thread that exits, so no OpenMP team outlives the call (see convo.threads)
    return run_in_fresh_thread(_generate_padded, lm, texts, sampling, batch_size, stop)


def pipeline(lm: LoadedModel, source: Callable[[], tuple[Any, Program] | None], sampling: Sampling | None = None,
             width: int = 16, stop: Stop | None = None) -> Iterator[Finished]:
    """Run many multi-step generations ("programs", e.g. conversations written turn by turn), ``width``
    at a time, yielding each one as it finishes.

    ``source()`` hands out the next ``(key, program)``, or None when it has none now; it is asked again
    whenever a program finishes, so it may hand out retries of earlier ones. On the fast CPU engine
    every program takes its next step as soon as its own replies are in, and a new program starts as
    soon as one ends: the decode batch stays full instead of waiting, step after step, for the longest
    reply of a batch. Elsewhere the active programs step together as one padded batch. Once ``stop``
    is set no new step starts and the pipeline ends; unfinished programs are dropped. On the engine a
    fixed ``sampling.seed`` gives every program and step its own seed, so results do not depend on
    what ran alongside, and no reply is empty: its first token is never a stop (a keyword script's line
    stops at a newline, and the bundled model sometimes began one with it, three tries running).
    """
    sampling, width = sampling or Sampling(), max(1, width)
    if getattr(lm, "remote", False):
        from . import remote

        return remote.pipeline(lm, source, sampling, width, stop)
    engine = _engine(lm)
    if engine is not None:
        return _pipeline_engine(lm, engine, source, sampling, width, stop)
    return _pipeline_padded(lm, source, sampling, width, stop)


def _pipeline_engine(lm, engine, source, sampling, width, stop) -> Iterator[Finished]:
    notify: queue.Queue = queue.Queue()
    owners: dict[int, _Running] = {}
    ends = end_ids(lm.tokenizer, sampling.stop)

    def submit(running: _Running) -> None:
        running.requests, running.pending = [], len(running.prompts)
        for text in running.prompts:
            seed = None if sampling.seed is None else sampling.seed + running.seed + running.asked
            favour = favoured_ids(lm.tokenizer, getattr(text, "favour", ()))
            request = engine.submit(_prompt_ids(lm, text), replace(sampling_for(text, sampling), seed=seed), stop,
                                    notify, ends, favour=list(favour), bias=getattr(text, "bias", STEER),
                                    complete=favour, nonempty=True)
            owners[id(request)] = running
            running.requests.append(request)
            running.asked += 1

    def one_ended() -> _Running:
        return owners.pop(id(notify.get()))  # the engine ends every request (errors and closing too)

    try:
        yield from drive_pipeline(source, width, stop, submit, one_ended,
                                  lambda running: [_reply_text(lm, r) for r in running.requests])
    finally:  # left early (stop, an error, the consumer closed us): the engine drops what is left
        for running in owners.values():
            for request in running.requests:
                request.stop = _ABANDONED


def _pipeline_padded(lm, source, sampling, width, stop) -> Iterator[Finished]:
    active: list[_Running] = []
    for step in itertools.count():
        while len(active) < width and not _stopped(stop):
            handed = source()
            if handed is None:
                break
            running = _Running(*handed)
            finished = _advance(running, None)
            if finished is not None:
                yield finished
            else:
                active.append(running)
        if not active or _stopped(stop):
            return
        prompts = [text for running in active for text in running.prompts]
        # on a thread that exits, so no OpenMP team outlives the call (see convo.threads)
        # a fixed seed still gives each step (and so a retry) its own samples
        step_sampling = sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + step)
        replies = iter(run_in_fresh_thread(_generate_padded, lm, prompts, step_sampling, width, stop))
        if _stopped(stop):  # replies may be cut short
            return
        still = []
        for running in active:
            finished = _advance(running, [next(replies) for _ in running.prompts])
            if finished is None:
                still.append(running)
            else:
                yield finished
        active = still


def _reply_text(lm: LoadedModel, request) -> str:
    """The whole reply of an engine request, once it ends, cut before its first stop string."""
    return finished_text(lm.tokenizer.decode(list(request.tokens()), skip_special_tokens=True), request.sampling.stop)


def _generate_padded(lm: LoadedModel, texts: list[str], sampling: Sampling, batch_size: int,
                     stop: Stop | None) -> list[str]:
    import torch

    replies: list[str] = []
    stopping = _stopping(lm, sampling, [stop] if stop is not None else [])
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        inputs = _encode(lm, chunk, sampling.max_new_tokens)
        _seed(sampling)
        with torch.inference_mode():
            output = lm.model.generate(**inputs, **_generate_kwargs(lm, sampling), stopping_criteria=stopping)
        new_tokens = output if lm.is_seq2seq else output[:, inputs["input_ids"].shape[1]:]
        decoded = lm.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        replies.extend(finished_text(t, sampling.stop) for t in decoded)
    return replies


def continuation_logprobs(lm: LoadedModel, prompt: str, continuations: Sequence[str]) -> list[float]:
    """Mean log-probability per token of each continuation after ``prompt``. The prompt is computed
    once: on the fast engine (usually it is in the prefix cache already) each continuation's tokens
    then join a decode step; elsewhere the model's own forward runs the continuations after the
    prompt's cached keys and values.

    Used to rank candidate questions by how likely the model itself finds them.
    """
    if not continuations:
        return []
    if getattr(lm, "remote", False):  # what the server returned while generating them (see remote)
        from . import remote

        return remote.continuation_logprobs(lm, list(continuations))
    engine = None if lm.is_seq2seq else _engine(lm)
    if engine is not None:
        return _engine_logprobs(lm, engine, prompt, list(continuations))
    # on a thread that exits, so no OpenMP team outlives the call (see convo.threads)
    return run_in_fresh_thread(_continuation_logprobs, lm, prompt, list(continuations))


def _engine_logprobs(lm: LoadedModel, engine, prompt: str, continuations: list[str]) -> list[float]:
    """Scores on the fast engine: the first continuation alone (its prompt goes into the prefix cache,
    where a reply to the same prompt has usually put it already), then the others together, each
    computing only its own tokens. (The model's own forward ran the prompt again for every
    continuation, in fp32, and took 3.4-4.3 s of the 3.8-4.7 s that six follow-up questions took on
    the bundled model; Zen 4, 2 cores.)"""
    prompt_ids, ids = _scoring_ids(lm.tokenizer, prompt, continuations)
    scores = _score_of(engine.score(prompt_ids, ids[0]))
    rest = [engine.score(prompt_ids, cont) for cont in ids[1:]]
    return scores + [score for request in rest for score in _score_of(request)]


def _scoring_ids(tok, prompt: str, continuations: list[str]) -> tuple[list[int], list[list[int]]]:
    """The prompt's token ids and each continuation's (at most 64; an empty one scores the end token)."""
    return (tok(prompt, add_special_tokens=False).input_ids,
            [tok(text, add_special_tokens=False).input_ids[:64] or [tok.eos_token_id] for text in continuations])


def _score_of(request) -> list[float]:
    """A scoring request's result, as a list of one (an engine that closed first raises)."""
    result = list(request.tokens())
    if len(result) != 1:
        raise RuntimeError("the engine closed before the continuation was scored")
    return result


def _continuation_logprobs(lm: LoadedModel, prompt: str, continuations: list[str]) -> list[float]:
    import torch

    tok = lm.tokenizer
    if lm.is_seq2seq:
        return _seq2seq_logprobs(lm, prompt, continuations)
    prompt_ids, conts = _scoring_ids(tok, prompt, continuations)
    prompt_ids = prompt_ids[-(lm.context_length - 64):]
    width = max(len(c) for c in conts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    device = lm.model.device
    label_ids = labels_of(conts, device)
    attention = torch.tensor([[1] * (len(prompt_ids) + len(c)) + [0] * (width - len(c)) for c in conts], device=device)
    with torch.inference_mode():
        # The prompt once, then every continuation after its cached keys and values: the logits after
        # the prompt's last token predict each continuation's first token, the continuation's own the
        # rest. (One pass over prompt + continuation per row ran the prompt again for every row.)
        keep_last = {"logits_to_keep": 1} if "logits_to_keep" in _forward_parameters(lm.model) else {}
        out = lm.model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True, **keep_last)
        cache = getattr(out, "past_key_values", None)
        if cache is not None and hasattr(cache, "batch_repeat_interleave"):
            cache.batch_repeat_interleave(len(conts))
            input_ids = torch.tensor([c + [pad] * (width - len(c)) for c in conts], device=device)
            rest = lm.model(input_ids=input_ids, attention_mask=attention, past_key_values=cache).logits
            first = out.logits[:, -1:].expand(len(conts), 1, -1)
            return _mean_logprobs(torch.cat([first, rest[:, :-1]], dim=1), label_ids)
    # a model without a reusable cache: prompt + continuation in one pass per row
    rows = [prompt_ids + c + [pad] * (width - len(c)) for c in conts]
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor(rows, device=device), attention_mask=attention).logits
    return _mean_logprobs(logits[:, len(prompt_ids) - 1:-1], label_ids)


def _seq2seq_logprobs(lm: LoadedModel, prompt: str, continuations: list[str]) -> list[float]:
    """An encoder-decoder's scores: the prompt is the encoder's input, encoded once and shared by
    every continuation's row (a view, not copies); the decoder then runs each continuation. (The
    prompt was encoded again for every row: a Questions-tab passage once per candidate question.)
    The encoder reads the prompt as generation does (:func:`_encode`: truncated on the left); the
    continuations are padded on the right whatever the tokenizer's side (generation leaves it on the
    left, which had put pad tokens before the shorter continuations' own and changed their scores)."""
    import torch

    tok, device = lm.tokenizer, lm.model.device
    enc = _encode(lm, [prompt], 0)
    labels = labels_of([tok(text).input_ids for text in continuations], device)
    rows = len(continuations)
    with torch.inference_mode():
        encoded = lm.model.get_encoder()(**enc).last_hidden_state
        logits = lm.model(encoder_outputs=(encoded.expand(rows, -1, -1),),
                          attention_mask=enc["attention_mask"].expand(rows, -1), labels=labels).logits
    return _mean_logprobs(logits, labels)


def labels_of(ids: list[list[int]], device=None):
    """Token ids of different lengths as one labels tensor, padded on the right with -100 (not scored)."""
    import torch

    width = max(len(i) for i in ids)
    return torch.tensor([i + [-100] * (width - len(i)) for i in ids], device=device)


def _forward_parameters(model) -> set[str]:
    """The parameters of the forward of ``model`` (of its base model, under a PEFT adapter)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


def _mean_logprobs(logits, labels) -> list[float]:
    import torch

    logprobs = torch.log_softmax(logits.float(), dim=-1)
    mask = labels != -100
    picked = logprobs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return (picked.sum(-1) / mask.sum(-1).clamp(min=1)).tolist()
