"""The generation programs: one multi-step program per item (keyword script or turns, persona agents or
script, restyle)."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..engine.generation import STEER, Program, Steered, check_messages, pipeline, render_prompt
from ..filters import is_nonsense
from .config import LINE_TOKENS, PERSONA_SCRIPT_ROLES, SCRIPT, compile_exclude, fill_template
from .jobs import Item, Job, KeywordJob, PersonaJob, SynthSampling, default_sampling
from .parsing import (_labels, _whole_sentences, clean_reply, cut_to, excluded_by, keyword_faults, mentions,
                      parse_script, persona_faults, strip_actions, strip_address)


@dataclass
class Result:
    """One generated conversation, kept or not."""

    item: Item
    messages: list[dict]
    faults: list[str] = field(default_factory=list)
    raw: str = ""
    """The model's text for script strategies (to see why a conversation was dropped)."""
    restyled: list[dict] | None = None
    attempt: int = 0

    @property
    def kept(self) -> bool:
        return not self.faults


def generate_items(lm, job: Job, items: Sequence[Item], sampling, batch_size: int | None = None) -> list[Result]:
    """One attempt at each item, ``batch_size`` conversations at a time (default ``SynthSampling().batch_size``);
    results in item order."""
    results: list[Result | None] = [None] * len(items)
    pending = iter(enumerate(items))
    make = program_for(lm, job, sampling)

    def source():
        index, item = next(pending, (None, None))
        return None if item is None else (index, make(item))

    for finished in pipeline(lm, source, sampling, SynthSampling().batch_size if batch_size is None else batch_size):
        results[finished.key] = finished.value
    return results


def program_for(lm, job: Job, sampling=None) -> Callable[[Item], Program]:
    """How one conversation of ``job`` is made, as a ``generation.pipeline`` program: it yields the
    prompts of each step and gets their replies, so many conversations share decode steps, each
    taking its next turn as soon as its last reply is in. ``sampling``: greedy decoding makes one
    candidate per line (more would be the same text)."""
    if isinstance(job, KeywordJob):
        exclude = compile_exclude(job.config.exclude)
        if job.strategy == SCRIPT:
            return lambda item: _keyword_script(lm, job, item, exclude)
        sampled = sampling is None or sampling.do_sample
        candidates = job.line_candidates if sampled else 1
        budget = (sampling or default_sampling(job)).max_new_tokens
        return lambda item: _keyword_turns(lm, job, item, exclude, candidates, tries=3 if sampled else 1, budget=budget)
    write = _persona_script if job.strategy == SCRIPT else _persona_agents
    return lambda item: _with_restyle(lm, job, write(lm, job, item))


def _script_prompt(lm, instruction: str, prefill: str) -> str:
    """A chat prompt whose answer is pre-started with the script's first label, so even a small model
    writes the ``ROLE: text`` format instead of prose about it."""
    return render_prompt(lm, [{"role": "user", "content": instruction}]) + prefill


def judge_keyword_script(script: str, word: str, job: KeywordJob,
                         exclude: Sequence[tuple[str, re.Pattern]] | None = None) -> tuple[list[dict], list[str]]:
    r"""Parse a keyword script, strip forms of address, and list why it would be dropped (empty: kept).

    >>> from convo.synth import KeywordConfig
    >>> job = KeywordJob(KeywordConfig("d", ["{word}"], ["rain"]))
    >>> judge_keyword_script("STUDENT: Teacher, why does rain fall?\nTEACHER: Clouds get heavy.", "rain", job)
    ([{'role': 'user', 'content': 'Why does rain fall?'}, {'role': 'assistant', 'content': 'Clouds get heavy.'}], [])
    """
    messages, faults = parse_script(script, job.roles)
    if job.strip_address:
        messages = [{**m, "content": strip_address(m["content"], job.roles)} for m in messages]
    if not faults:
        faults = keyword_faults(messages, word, compile_exclude(job.config.exclude) if exclude is None else exclude)
    return messages, faults


def _keyword_script(lm, job: KeywordJob, item: Item, exclude) -> Program:
    """The earlier scripts' way: one generation per conversation, parsed into turns."""
    prefill = f"{job.roles[0]}:"
    [output] = yield [_script_prompt(lm, job.config.prompt(item.word), prefill)]
    raw = f"{prefill} {output}"
    return Result(item, *judge_keyword_script(raw, item.word, job, exclude), raw=raw)


def _keyword_turns(lm, job: KeywordJob, item: Item, exclude, candidates: int = 1, tries: int = 3,
                   budget: int = LINE_TOKENS) -> Program:
    """The script written one line per step: each step pre-starts the next speaker's label and keeps the
    model's first line, so even a 135M model keeps the format and the turns alternate.

    Until a line names the item's word, its prompt is ``Steered`` towards the word (on the CPU engine the
    word's first tokens get better odds until the line has one: a conversation that never named its word was
    the most common drop, 46% of attempts were kept without it and 89% with it), and each step samples
    ``candidates`` lines in the same batched step and keeps one that names it (and matches no exclude
    entry). A line that would drop the conversation is sampled again, up to ``tries`` times, since redoing a
    line is cheaper than redoing the conversation: one that came back empty (the model began with a newline,
    the line's stop), one that matches an exclude entry or babbles (repeated-token nonsense), and a last
    line with which the script would be dropped or cut short: while the word is missing (steered harder each
    time, ``STEER`` nats more), or when the line is unfinished (cut by the token limit), since the judge
    then trims it and the question before it (and the word with them, when only they named it), leaving a
    conversation shorter than ``turns``; such a line is sampled again with twice the token ``budget``.
    (Bundled model, 8 words x 4, seeds 0-2: these drops were 6-7 of 38-40 attempts, with the conversation
    redone each time. Later, 9 of 265 attempts in eight runs were still dropped: 4 for babble such as "Oh
    no, no, no", 5 for a missing word, 3 of them named only in an ending the judge trimmed.)"""
    base = render_prompt(lm, [{"role": "user", "content": job.config.prompt(item.word)}])
    script = ""
    doomed = False  # a line failed all its tries: the script is dropped whatever its last line says
    for step in range(2 * job.turns):
        speaker = job.roles[step % 2]
        named = mentions(script, item.word)
        last = step == 2 * job.turns - 1
        prompt = base + script + f"{speaker}:"
        tokens = None  # the sampling's budget; twice it after a last line cut by it
        for attempt in range(tries):
            if named:
                outputs = yield [Steered(prompt, tokens=tokens)]
            else:
                bias = STEER * (1 + attempt) if last else STEER
                outputs = yield [Steered(prompt, (item.word,), bias, tokens)] * candidates
            line = _best_line([first_line(output, job.roles) for output in outputs], item.word, exclude, named)
            fits = _clean(line, exclude)
            if fits and (not last or doomed):
                break
            if fits:
                messages, faults = judge_keyword_script(f"{script}{speaker}: {line}\n", item.word, job, exclude)
                if not faults and len(messages) == 2 * job.turns:
                    break
                if len(messages) < 2 * job.turns:  # unfinished, so trimmed: give it room to end its sentence
                    tokens = 2 * budget
        doomed = doomed or not fits
        script += f"{speaker}: {line}\n"
    return Result(item, *judge_keyword_script(script, item.word, job, exclude), raw=script)


def _clean(line: str, exclude) -> bool:
    """A line that can stand in a script: not empty, matching no exclude entry, not babble."""
    return bool(line) and excluded_by(line, exclude) is None and not is_nonsense(line)


def _best_line(lines: Sequence[str], word: str, exclude, named: bool) -> str:
    """The first clean line (``_clean``) that names ``word`` (any, once the script has); else the first
    clean one, or else the first.

    >>> _best_line(["Hello.", "I like rain.", "Rain again."], "rain", [], named=False)
    'I like rain.'
    """
    clean = [line for line in lines if _clean(line, exclude)]
    return next((line for line in clean if named or mentions(line, word)), clean[0] if clean else lines[0])


def first_line(text: str, roles: Sequence[str]) -> str:
    r"""The first line of a generated turn, cut before any speaker label and back to its last full sentence.

    >>> first_line("Rain falls. It is wet and\nSTUDENT: more", ("STUDENT", "TEACHER"))
    'Rain falls.'
    """
    text = text.strip()
    label = re.search(rf"\n|(?:^|\s)[*_]*(?:{_labels(roles)})[*_]*\s*:", text, re.IGNORECASE)
    if label:
        text = text[:label.start()]
    return _whole_sentences(strip_actions(text, roles))


def _persona_script(lm, job: PersonaJob, item: Item) -> Program:
    user, assistant = PERSONA_SCRIPT_ROLES
    prefill = f"{user}: {item.seed}\n{assistant}:"
    [output] = yield [_script_prompt(lm, fill_template(job.template, job.values(item)), prefill)]
    raw = f"{prefill} {output}"
    messages, faults = parse_script(raw, PERSONA_SCRIPT_ROLES)
    messages = messages[:2 * job.turns]
    return Result(item, messages, faults or persona_faults(messages), raw)


def _persona_agents(lm, job: PersonaJob, item: Item) -> Program:
    """Two role-played agents take turns.

    The user agent sees its persona as system prompt and the chat with roles swapped (its own messages
    as "assistant"), so it speaks as itself, in character, at every turn.
    """
    conversation = [{"role": "user", "content": item.seed}]
    persona = [{"role": "system", "content": fill_template(job.template, job.values(item))}]
    assistant_system = [{"role": "system", "content": job.assistant_prompt}] if job.assistant_prompt else []
    for turn in range(job.turns):
        if turn > 0:
            [reply] = yield [render_prompt(lm, check_messages(persona + _swap_roles(conversation)))]
            conversation.append({"role": "user", "content": clean_reply(reply)})
        [reply] = yield [render_prompt(lm, check_messages(assistant_system + conversation))]
        conversation.append({"role": "assistant", "content": clean_reply(reply)})
    return Result(item, conversation, persona_faults(conversation))


def _swap_roles(conversation: list[dict]) -> list[dict]:
    swap = {"user": "assistant", "assistant": "user"}
    return [{"role": swap[m["role"]], "content": m["content"]} for m in conversation]


def _with_restyle(lm, job: PersonaJob, write: Program) -> Program:
    """``write``, then (with a restyle template, for a kept conversation) every message rewritten by it."""
    result = yield from write
    if job.restyle_template and result.kept and result.messages:
        replies = yield [render_prompt(lm, [{"role": "user", "content": fill_template(job.restyle_template, {
            **job.values(result.item), "message": m["content"], "role": m["role"]})}]) for m in result.messages]
        result.restyled = [{"role": m["role"], "content": cut_to(clean_reply(text), job.restyle_max_chars)}
                           for m, text in zip(result.messages, replies)]
    return result
