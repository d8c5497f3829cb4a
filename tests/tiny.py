"""Tiny random models (2 layers, hidden 64) with a tokenizer trained on the fly, for fast tests.

``make_tiny_causal(folder)`` / ``make_tiny_seq2seq(folder)`` write a loadable model folder in
well under a second; no network and no download is involved.
"""
from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = """The river flows past the old mill where the miller grinds wheat into flour every morning.
What is the capital of France? Paris is the capital of France and its largest city.
Why do birds migrate? Many birds fly south in autumn to find food and warmer weather.
How does a bicycle stay upright? Riders steer and the wheels act like gyroscopes.
Alice asked Bob where he had been, and Bob said he had walked to the library to read about stars.
Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar and oxygen.
Do you like music? I play the guitar and I love to sing songs with my friends on Sundays.
The teacher asked the student a question about the history of the Roman empire in 1200 words.
""" * 4


def train_tokenizer(special: list[str], vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # Metaspace (sentencepiece-style) rather than byte-level BPE: every token decodes to whole
    # characters, so a random model's output streams token by token instead of as broken bytes.
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special + ["<unk>"] * ("<unk>" not in special))
    raw.train_from_iterator([CORPUS], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=raw)


def _mute_special_tokens(model, tok) -> None:
    """Zero the embeddings of special and whitespace-only tokens so a random model's greedy
    output is visible text that runs to max_new_tokens, instead of stopping at once on EOS."""
    import torch

    with torch.no_grad():
        blank = [i for t, i in tok.get_vocab().items() if not tok.convert_tokens_to_string([t]).strip()]
        for token_id in set(tok.all_special_ids) | set(blank):
            model.get_input_embeddings().weight[token_id].zero_()
            model.get_output_embeddings().weight[token_id].zero_()


def make_tiny_causal(folder: str | Path, seed: int = 0, layers: int = 2, context: int = 512) -> Path:
    """A tiny Llama; more ``layers`` make each token cost more (a reply that streams for seconds)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tok = train_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>", "<unk>"])
    tok.eos_token, tok.pad_token, tok.bos_token, tok.unk_token = "<|endoftext|>", "<pad>", "<|endoftext|>", "<unk>"
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                         bos_token_id=tok.bos_token_id, eos_token_id=[tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")],
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    _mute_special_tokens(model, tok)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def make_tiny_seq2seq(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    folder = Path(folder)
    tok = train_tokenizer(["<pad>", "</s>", "<unk>"])
    tok.pad_token, tok.eos_token, tok.unk_token = "<pad>", "</s>", "<unk>"
    config = T5Config(vocab_size=len(tok), d_model=64, d_ff=128, d_kv=16, num_layers=2, num_decoder_layers=2,
                      num_heads=4, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      decoder_start_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    _mute_special_tokens(model, tok)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
