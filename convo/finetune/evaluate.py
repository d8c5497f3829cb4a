"""Evaluation of an adapter: ROUGE-L and BLEU, generation compared with the base model (on
examples or on passages), validation loss, and ``evaluate_adapter`` on a data file.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ..data import load_examples
from ..settings import ModelSpec
from .config import Conversation, _check
from .encode import encode_examples, pad_collator
from .save import read_metadata


def _metric_words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (longest common subsequence of lower-cased words and punctuation), in [0, 1].

    >>> rouge_l("where did marta live?", "Where did Marta live?")
    1.0
    """
    cand, ref = _metric_words(candidate), _metric_words(reference)
    lcs = _lcs_length(cand, ref)
    if not lcs:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def bleu(candidates: Sequence[str], references: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU-4 in [0, 1] with add-one smoothing of the 2- to 4-gram precisions (Lin & Och
    2004), so short questions that share no 4-gram still score above zero.

    >>> round(bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 3)
    1.0
    """
    _check(len(candidates) == len(references), "bleu needs one reference per candidate")
    matches, totals = [0] * max_n, [0] * max_n
    cand_len = ref_len = 0
    for candidate, reference in zip(candidates, references):
        cand, ref = _metric_words(candidate), _metric_words(reference)
        cand_len, ref_len = cand_len + len(cand), ref_len + len(ref)
        for n in range(1, max_n + 1):
            cand_grams, ref_grams = _ngrams(cand, n), _ngrams(ref, n)
            matches[n - 1] += sum(min(count, ref_grams[gram]) for gram, count in cand_grams.items())
            totals[n - 1] += max(len(cand) - n + 1, 0)
    if not cand_len or not matches[0]:
        return 0.0
    smooth = [0] + [1] * (max_n - 1)
    log_precision = sum(math.log((m + s) / (t + s)) for m, t, s in zip(matches, totals, smooth)) / max_n
    brevity = 1.0 if cand_len > ref_len else math.exp(1 - ref_len / cand_len)
    return brevity * math.exp(log_precision)


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def eval_sampling(task: str | None):
    """Greedy decoding long enough for the task's targets."""
    from ..settings import Sampling

    return Sampling(temperature=0.0, repetition_penalty=1.0, max_new_tokens=160 if task == "chat" else 64)


def generation_scores(outputs: Sequence[str], references: Sequence[str], prefix: str = "") -> dict:
    """ROUGE-L (mean) and corpus BLEU of outputs against references, rounded."""
    mean_rouge = sum(rouge_l(o, r) for o, r in zip(outputs, references)) / max(len(outputs), 1)
    return {f"{prefix}rouge_l": round(mean_rouge, 4), f"{prefix}bleu": round(bleu(outputs, references), 4)}


def compare_with_base(lm, examples: Sequence[Conversation], task: str | None,
                      n_samples: int = 4) -> tuple[dict, list[dict]]:
    """Generate for held-out examples with the adapter and with the adapter switched off.

    ``lm.model`` is a peft model. Returns the metrics (``rouge_l``, ``bleu``, ``base_rouge_l``,
    ``base_bleu``) and a side-by-side of the first ``n_samples`` examples.
    """
    prompts = [example[:-1] for example in examples]
    references = [example[-1]["content"] for example in examples]
    sampling = eval_sampling(task)
    lm.model.eval()
    adapter_out = generate_for(lm, prompts, sampling, batch_size=8)
    with lm.model.disable_adapter():
        base_out = generate_for(lm, prompts, sampling, batch_size=8)
    metrics = {**generation_scores(adapter_out, references), **generation_scores(base_out, references, "base_"),
               "generated_examples": len(examples)}
    samples = [{"prompt": prompt_text(p), "reference": r, "base": b, "adapter": a}
               for p, r, b, a in list(zip(prompts, references, base_out, adapter_out))[:n_samples]]
    return metrics, samples


def generate_for(lm, prompts: Sequence[Conversation], sampling, **kwargs) -> list[str]:
    """Greedy replies to task prompts, each rendered as the model was trained on it (``convo.data.render``)."""
    from ..data import render
    from ..engine.generation import generate_batch

    return generate_batch(lm, prompts, sampling, prompts=[render(lm, p) for p in prompts], **kwargs)


def prompt_text(messages: Conversation) -> str:
    """What a person reads as a prompt: the passage and question (its one user message), or for a
    conversation with earlier turns, the turns as ``User:`` / ``Assistant:`` lines (the last user
    message alone hid what the reply answers).

    >>> prompt_text([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Bees?"}])
    'Bees?'
    >>> print(prompt_text([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
    ...                    {"role": "user", "content": "Bees?"}]))
    User: Hi
    Assistant: Hello!
    User: Bees?
    """
    turns = [m for m in messages if m["role"] in ("user", "assistant")]
    if len(turns) > 1:
        return "\n".join(f"{m['role'].title()}: {m['content']}" for m in turns)
    return turns[-1]["content"] if turns else (messages[-1]["content"] if messages else "")


def passage_prompt(text: str, task: str | None, prompt_style: str | None = None) -> Conversation:
    """The prompt a task's adapter was trained on, for a passage a person pasted (``prompt_style``:
    what the adapter's ``convo_adapter.json`` records; ``qg`` adapters trained before it was recorded
    took the chat prompt).

    For ``qa`` the last line is the question and the lines above it the passage.

    >>> passage_prompt("Cats purr.", "qg", "fewshot")
    [{'role': 'fewshot', 'content': 'Cats purr.'}]
    >>> passage_prompt("Cats purr.", "qg")[-1]["content"]
    'Passage:\\nCats purr.'
    """
    from ..data import cqg_prompt, qa_closed_prompt, qa_prompt, qg_fewshot_prompt, qg_prompt

    text = text.strip()
    if task == "qa":
        passage, _, question = text.rpartition("\n")
        _check(bool(passage.strip() and question.strip()),
               "for question answering, put the passage first and the question on the last line")
        return qa_prompt(passage.strip(), question.strip())
    if task == "cqg":
        return cqg_prompt(text)
    if task == "qa_closed":
        return qa_closed_prompt(text)
    if task == "chat":
        return [{"role": "user", "content": text}]
    return qg_fewshot_prompt(text) if prompt_style == "fewshot" else qg_prompt(text)


def compare_on_passages(base: str, adapter_dir: str | Path, texts: Sequence[str], task: str | None, *,
                        quantize: str = "auto") -> list[dict]:
    """Greedy outputs of the base model and of base + adapter for each text (shared model pool)."""
    from ..engine import get_model

    prompt_style = read_metadata(adapter_dir).get("prompt_style")
    prompts = [passage_prompt(text, task, prompt_style) for text in texts]
    sampling = eval_sampling(task)
    base_out = generate_for(get_model(ModelSpec(base, quantize=quantize)), prompts, sampling)
    tuned_out = generate_for(get_model(ModelSpec(base, adapter=str(adapter_dir), quantize=quantize)), prompts, sampling)
    return [{"prompt": text, "base": b, "adapter": a} for text, b, a in zip(texts, base_out, tuned_out)]


def validation_loss(lm, examples: Sequence[Conversation], max_length: int = 512, batch_size: int = 8) -> float:
    """Mean loss per target token of ``examples`` under a loaded model (no Trainer needed)."""
    import torch

    items, _ = encode_examples(lm, examples, min(max_length, lm.context_length))
    _check(bool(items), "no example has a target token")
    tok = lm.tokenizer
    collate = pad_collator(tok)
    total, count = 0.0, 0
    for start in range(0, len(items), batch_size):
        batch = {k: v.to(lm.model.device) for k, v in collate(items[start:start + batch_size]).items()}
        with torch.inference_mode():
            logits = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              **({"labels": batch["labels"]} if lm.is_seq2seq else {})).logits.float()
        labels = batch["labels"] if lm.is_seq2seq else batch["labels"][:, 1:]
        logits = logits if lm.is_seq2seq else logits[:, :-1]
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="sum")
        total, count = total + losses.item(), count + int((labels != -100).sum())
    return total / count


def evaluate_adapter(adapter_dir: str | Path, data_path: str | Path, *, task: str | None = None,
                     base: str | None = None, max_examples: int = 64, compare_base: bool = False,
                     dtype: str = "auto", device: str = "auto") -> dict:
    """Validation loss, ROUGE-L and BLEU of a saved adapter on a data file (``training.evaluate``).

    The base comes from the adapter's ``convo_adapter.json`` unless ``base`` is given; with
    ``compare_base`` the base model is scored too (``base_*`` keys).
    """
    from ..engine import adapter_base, get_model
    from ..engine.loading import hub_shaped

    _check(Path(adapter_dir).is_dir() or hub_shaped(str(adapter_dir)), f"{adapter_dir}: no such adapter folder")
    meta = read_metadata(adapter_dir)
    base = base or adapter_base(adapter_dir)
    _check(bool(base), f"{adapter_dir} does not say which base model it was trained on: give it (base=, or --base)")
    examples, report = load_examples(data_path, task or meta.get("task"), max_bytes=None)  # a file on this machine
    task = report.task
    examples = examples[:max_examples]
    models = {"": get_model(ModelSpec(base, adapter=str(adapter_dir), dtype=dtype, device=device))}
    if compare_base:
        models["base_"] = get_model(ModelSpec(base, dtype=dtype, device=device))
    max_length = meta.get("hyperparameters", {}).get("max_length", 512)
    result = {"adapter": str(adapter_dir), "base_model": base, "data": str(data_path), "data_sha256": report.sha256,
              "task": task, "examples": len(examples)}
    references = [example[-1]["content"] for example in examples]
    for prefix, lm in models.items():
        result[f"{prefix}eval_loss"] = round(validation_loss(lm, examples, max_length), 4)
        outputs = generate_for(lm, [example[:-1] for example in examples], eval_sampling(task))
        result.update(generation_scores(outputs, references, prefix))
    return result
