"""Prompts' token-level facts the engines share: which token ids end a reply."""
from __future__ import annotations


END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
"""End-of-turn tokens of the chat templates convo knows: each one present in a vocabulary stops
generation, and the few-shot question prompt closes each worked question with one, so the model
ends its own question with it (measured: about 1.5x faster than running to max_new_tokens)."""


def stop_token_ids(lm) -> list[int]:
    """EOS plus the end-of-turn marker chat templates use (``<|im_end|>``, ``<|eot_id|>``...)."""
    tok = lm.tokenizer
    ids = set()
    if tok.eos_token_id is not None:
        ids.add(tok.eos_token_id)
    generation_eos = getattr(getattr(lm.model, "generation_config", None), "eos_token_id", None)
    if isinstance(generation_eos, int):
        ids.add(generation_eos)
    elif isinstance(generation_eos, list):
        ids.update(generation_eos)
    for marker in END_MARKERS:
        token = token_id(tok, marker)
        if token is not None:
            ids.add(token)
    return sorted(ids)


def token_id(tokenizer, token: str) -> int | None:
    """The id of ``token`` when it is one token of the vocabulary, else None. (Not ``get_vocab()``:
    that builds the whole vocabulary dict, about 50 ms for a 49k vocabulary, on every call.)"""
    try:
        found = tokenizer.convert_tokens_to_ids(token)
    except (KeyError, ValueError, TypeError):
        return None
    # a missing token maps to the unknown token's id, which may be a real token such as EOS
    if not isinstance(found, int) or tokenizer.convert_ids_to_tokens(found) != token:
        return None
    return found
