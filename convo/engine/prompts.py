"""Prompts' token-level facts the engines share: which token ids end a reply."""
from __future__ import annotations


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
    vocab = tok.get_vocab()
    for marker in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"):
        if marker in vocab:
            ids.add(vocab[marker])
    return sorted(ids)
