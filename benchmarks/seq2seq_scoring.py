"""How long ranking takes with an encoder-decoder question model (the T5 question generators):
``continuation_logprobs`` on a T5-small-shaped model, the passage encoded once for every candidate
(convo) against encoded again for each candidate's row (the reference: convo until 2026-12-05),
taking turns.

    python benchmarks/seq2seq_scoring.py [--candidates 25] [--repeats 5]

The Questions tab scores every candidate question by its mean token log-probability after the
passage. For a seq2seq model the passage is the encoder's input. The model has T5-small's shape
(6+6 layers, width 512, 32k vocabulary) and random weights, since nothing can be downloaded here:
time depends on the shape, not the weights. The bundled model's tokenizer cuts the passage (a
Questions-tab passage of about 400 words) and the questions into tokens. Both ways score the same
tokens, so the script also prints how far apart their scores are.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from common import machine

PASSAGE = ("Mount Tambora is a volcano on the island of Sumbawa in Indonesia. It erupted in April 1815 in the "
           "largest eruption in recorded history, heard more than 2,000 kilometres away. The ash and the sulphur "
           "it threw into the sky cooled the whole northern hemisphere: 1816 became the Year Without a Summer. "
           "Snow fell in New England in June, farmers lost their crops, and hunger spread across Europe. ") * 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=25, help="candidate questions scored in one call")
    parser.add_argument("--repeats", type=int, default=5, help="calls each way (the figures are medians)")
    args = parser.parse_args()
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from convo.engine import bundled_model_dir, generation, get_model
    from convo.settings import ModelSpec

    print(machine())
    folder = tempfile.mkdtemp(prefix="t5-small-shaped-")
    tok = AutoTokenizer.from_pretrained(bundled_model_dir())
    tok.pad_token = tok.eos_token
    config = T5Config(vocab_size=len(tok), d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_decoder_layers=6,
                      num_heads=8, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      decoder_start_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    lm = get_model(ModelSpec(folder, dtype="float32"))
    prompt = "generate questions: " + PASSAGE
    questions = [f"What happened in {1810 + i} after the eruption of Mount Tambora?" for i in range(args.candidates)]
    print(f"passage: {len(tok(prompt).input_ids)} tokens (the encoder takes {lm.context_length}); "
          f"{args.candidates} candidate questions")

    def reference(lm, prompt, continuations):  # the passage encoded again for every row
        enc = generation._encode(lm, [prompt] * len(continuations), 0)
        labels = generation.labels_of([tok(text).input_ids for text in continuations])
        with torch.inference_mode():
            logits = lm.model(**enc, labels=labels).logits
        return generation._mean_logprobs(logits, labels)

    ways = {"encoded once": generation._seq2seq_logprobs, "once per row": reference}
    times: dict[str, list[float]] = {name: [] for name in ways}
    scores = {}
    for i in range(args.repeats + 1):  # the first round warms up
        for name, score in ways.items():
            started = time.perf_counter()
            scores[name] = generation.run_in_fresh_thread(score, lm, prompt, questions)
            if i:
                times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in times.items()}
    for name in ways:
        print(f"{name:>13}, median of {args.repeats}: {median[name] * 1000:6.0f} ms a call "
              f"({', '.join(f'{t * 1000:.0f}' for t in times[name])})")
    gap = max(abs(a - b) for a, b in zip(scores["encoded once"], scores["once per row"]))
    print(f"encoded once vs once per row: {median['once per row'] / median['encoded once']:.1f}x faster; "
          f"scores differ by at most {gap:.1e} (mean log-prob per token)")


if __name__ == "__main__":
    main()
