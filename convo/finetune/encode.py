"""Examples -> tokens: each example rendered as the model will be asked (``convo.data.render``: its
chat template, or the few-shot completion text of the ``qg`` task) and encoded, with labels on the
assistant turns only (-100 elsewhere), plus the padding collator and the dataset.
"""
from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterable, Sequence

from .config import Conversation, END_OF_TURN_MARKERS


def assistant_spans(lm, conversation: Conversation) -> tuple[str, list[tuple[int, int]]]:
    """The rendered training text and the character spans of every assistant turn in it.

    A span is found by rendering the conversation up to that turn (with the generation prompt)
    and through it: what lies between is what the model must learn to say, including its
    end-of-turn marker. Templates that do not render prefixes consistently fall back to finding
    the message text in the full rendering.
    """
    from ..data import render

    full = render(lm, conversation, add_generation_prompt=False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for index, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        span = _prefix_span(lm, conversation, index, full) or _search_span(lm, full, message["content"], cursor)
        if span is None or span[0] < cursor:
            raise ValueError(f"the chat template of {lm.spec.name} does not show assistant message {index} "
                             f"({message['content'][:40]!r}) in the rendered text; cannot train on it")
        spans.append(span)
        cursor = span[1]
    return full, spans


def _prefix_span(lm, conversation: Conversation, index: int, full: str) -> tuple[int, int] | None:
    from ..data import render

    try:
        before = render(lm, conversation[:index], add_generation_prompt=True)
        through = render(lm, conversation[: index + 1], add_generation_prompt=False)
    except Exception:  # e.g. a template that refuses a conversation starting with the assistant
        return None
    if not (full.startswith(through) and through.startswith(before)):
        return None
    # The trailing newline after an end-of-turn marker belongs to the template, not the reply.
    end = len(through.rstrip())
    content = conversation[index]["content"].strip()
    if end <= len(before) or (content and content not in through[len(before):end]):
        return None
    return len(before), end


def _search_span(lm, full: str, content: str, cursor: int) -> tuple[int, int] | None:
    start = full.find(content, cursor)
    if start < 0:
        return None
    end = start + len(content)
    for marker in (lm.tokenizer.eos_token or "", *END_OF_TURN_MARKERS):
        if marker and full.startswith(marker, end):
            return start, end + len(marker)
    return start, end


def encode_example(lm, conversation: Conversation, max_length: int) -> dict[str, list[int]] | None:
    """Token ids and labels of one example: assistant tokens are targets, all others are -100.

    Over-long examples keep their last ``max_length`` tokens (the target stays); returns None
    when no target token is left.
    """
    if lm.is_seq2seq:
        return _encode_seq2seq(lm, conversation, max_length)
    tok = lm.tokenizer
    text, spans = assistant_spans(lm, conversation)
    # Chat templates already contain the BOS/special tokens they need (as generation.py assumes).
    add_special = not getattr(tok, "chat_template", None)
    if getattr(tok, "is_fast", False):
        enc = tok(text, add_special_tokens=add_special, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        labels = [t if target else -100 for t, target in zip(ids, target_mask(enc["offset_mapping"], spans).tolist())]
    else:
        ids, labels = _encode_segments(tok, text, spans)
    ids, labels = ids[-max_length:], labels[-max_length:]
    if all(label == -100 for label in labels):
        return None
    return {"input_ids": ids, "labels": labels}


def target_mask(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]):
    """Which tokens are targets: those (of non-zero width) whose characters overlap an assistant span.
    One numpy pass a span (a Python test per token and span took 1.4 of an example's 1.6 ms).

    >>> target_mask([(0, 3), (3, 3), (3, 6), (6, 9)], [(4, 8)]).tolist()
    [False, False, True, True]
    """
    import numpy as np

    bounds = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    starts, ends = bounds[:, 0], bounds[:, 1]
    mask = np.zeros(len(bounds), dtype=bool)
    for span_start, span_end in spans:
        mask |= (starts < span_end) & (ends > span_start)
    return mask & (ends > starts)


def _encode_segments(tok, text: str, spans: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Slow tokenizers have no offsets: tokenize prompt and target pieces one by one."""
    ids: list[int] = []
    labels: list[int] = []
    cursor = 0
    for start, end in list(spans) + [(len(text), len(text))]:
        for piece, target in ((text[cursor:start], False), (text[start:end], True)):
            piece_ids = tok(piece, add_special_tokens=False)["input_ids"] if piece else []
            ids += piece_ids
            labels += piece_ids if target else [-100] * len(piece_ids)
        cursor = end
    return ids, labels


def _encode_seq2seq(lm, conversation: Conversation, max_length: int) -> dict[str, list[int]] | None:
    # Encoder-decoder models learn the last assistant turn from everything before it.
    from ..data import render

    tok = lm.tokenizer
    source = render(lm, conversation[:-1])
    ids = tok(source, truncation=True, max_length=max_length)["input_ids"]
    labels = tok(text_target=conversation[-1]["content"], truncation=True, max_length=max_length)["input_ids"]
    return {"input_ids": list(ids), "labels": list(labels)} if labels else None


def encode_examples(lm, examples: Sequence[Conversation], max_length: int) -> tuple[list[dict], int]:
    """Encode many examples; returns the encoded ones and how many were dropped (no target left)."""
    encoded = [encode_example(lm, example, max_length) for example in examples]
    kept = [item for item in encoded if item is not None]
    return kept, len(encoded) - len(kept)


def pad_collator(tokenizer, pad_to_multiple_of: int | None = None, pad_id: int | None = None):
    """transformers' ``DataCollatorForSeq2Seq`` with labels padded by -100, on a private copy of the
    tokenizer that right-pads with ``pad_id`` (default: its pad token, else EOS).

    Padding gets attention 0 and label -100 by position, not by token id, so a tokenizer whose pad
    token is its EOS still learns to stop; the shared tokenizer's padding side (left, for batched
    generation) is left alone.
    """
    import copy

    from transformers import DataCollatorForSeq2Seq

    tok = copy.deepcopy(tokenizer)
    tok.padding_side = "right"
    pad = pad_id if pad_id is not None else tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if tok.pad_token_id != pad:
        tok.pad_token = tok.convert_ids_to_tokens(pad)
    return DataCollatorForSeq2Seq(tok, label_pad_token_id=-100, pad_to_multiple_of=pad_to_multiple_of,
                                  return_tensors="pt")


PROGRESS_EVERY_S = 1.0
"""How often ``EncodedDataset.encode`` reports its progress (and a job checks for a stop) while it encodes."""


class EncodedDataset:
    """Encoded examples as a map-style dataset (Trainer needs __len__ and __getitem__), packed as
    they arrive into flat int32 arrays of token ids and labels: 8 bytes a token, where lists of
    Python ints held about 40 (a job on a 108k-question CoQA file peaked at 3.1 GB that way, 2.1 packed).
    ``None`` items (no target left) are counted in ``dropped``, not kept.

    >>> data = EncodedDataset([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, None, {"input_ids": [8], "labels": [8]}])
    >>> len(data), data.dropped, data[0], data[-1]["input_ids"]
    (2, 1, {'input_ids': [5, 6, 7], 'labels': [-100, 6, 7]}, [8])
    """

    def __init__(self, items: Iterable[dict | None]):
        self.ids, self.labels = array("i"), array("i")
        self.id_starts, self.label_starts = array("q", [0]), array("q", [0])  # labels differ in length for seq2seq
        self.dropped = 0
        for item in items:
            if item is None:
                self.dropped += 1
                continue
            self.ids.extend(item["input_ids"])
            self.labels.extend(item["labels"])
            self.id_starts.append(len(self.ids))
            self.label_starts.append(len(self.labels))

    def __len__(self) -> int:
        return len(self.id_starts) - 1

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        ids = self.ids[self.id_starts[index]:self.id_starts[index + 1]]
        labels = self.labels[self.label_starts[index]:self.label_starts[index + 1]]
        return {"input_ids": ids.tolist(), "labels": labels.tolist()}

    @classmethod
    def encode(cls, lm, examples: Sequence[Conversation], max_length: int,
               on_progress: Callable[[int, int], None] | None = None, every_s: float | None = None) -> "EncodedDataset":
        """Encode ``examples`` one by one into a packed dataset (no list of every example's tokens).
        ``on_progress(done, total)`` is called on the first example, then at most every ``every_s``
        seconds (default PROGRESS_EVERY_S), and at the end: a 108k-question file takes most of a minute
        to encode on a CPU, and the job said nothing meanwhile. It may raise to stop the encoding (a cancelled job)."""
        every_s = PROGRESS_EVERY_S if every_s is None else every_s
        total = len(examples)
        last = time.monotonic()

        def encoded():
            nonlocal last
            for done, example in enumerate(examples):
                if on_progress is not None and (done == 0 or time.monotonic() - last >= every_s):
                    last = time.monotonic()
                    on_progress(done, total)
                yield encode_example(lm, example, max_length)
            if on_progress is not None:
                on_progress(total, total)

        return cls(encoded())
