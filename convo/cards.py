"""Cards for the Hub: the README.md of a pushed adapter (model card) or dataset (dataset card), with
their metadata, counts, settings and how to use them; no credential ever reaches one.
"""
from __future__ import annotations

import json
import re
from typing import Any, Mapping

from .hub import _REPO_ID_RE, check_card

__all__ = ["adapter_card", "dataset_card"]

# Key words that mark a config entry as a credential; matched on whole words so that
# "max_new_tokens" stays while "hf_token", "apiKey" or "password" go.
_SECRET_WORDS = {
    "token", "secret", "secrets", "password", "passwd", "apikey", "credential", "credentials", "auth", "authorization",
}


def _is_secret_key(key: object) -> bool:
    """True for keys like ``hf_token``, ``HF_TOKEN``, ``apiKey``, ``OPENAI_API_KEY``, ``password``."""
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", str(key))]
    pairs = {a + b for a, b in zip(words, words[1:])}
    return bool(_SECRET_WORDS.intersection(words) or _SECRET_WORDS.intersection(pairs))


def _without_secrets(value: Any) -> Any:
    """A copy of a nested dict/list with every credential-like key removed."""
    if isinstance(value, Mapping):
        return {k: _without_secrets(v) for k, v in value.items() if not _is_secret_key(k)}
    if isinstance(value, (list, tuple)):
        return [_without_secrets(v) for v in value]
    return value


def _card(card_class, data, body: str) -> str:
    """The card's text: huggingface_hub's card data writes the YAML header, its card class parses it back."""
    return str(card_class(f"---\n{data.to_yaml()}\n---\n{body}"))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(title: str, rows: Mapping[str, Any], empty: str) -> str:
    if not rows:
        return f"## {title}\n\n{empty}\n"
    lines = [f"## {title}", "", "| name | value |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows.items()]
    return "\n".join(lines) + "\n"


def _looks_like_hub_id(name: str) -> bool:
    return bool(_REPO_ID_RE.match(name or ""))


def adapter_card(
    *,
    repo_id: str,
    base_model: str,
    data_file_name: str,
    data_sha256: str,
    counts: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    metrics: Mapping[str, Any],
    prompt: str | None = None,
) -> str:
    """README.md for a LoRA adapter repo: YAML header (peft, base model, tags), usage, the prompt
    format when it is not the chat template (``prompt``), data, tables.

    Credential-like keys are dropped from the dicts; raises :class:`HubError` if an ``hf_...`` string remains.
    """
    meta: dict[str, Any] = {"library_name": "peft"}
    if _looks_like_hub_id(base_model):  # the Hub rejects a base_model that is not a repo id
        meta["base_model"] = base_model
    meta.update(tags=["convo", "lora"], pipeline_tag="text-generation")
    counts, hyperparameters, metrics = (_without_secrets(dict(d)) for d in (counts, hyperparameters, metrics))
    name = repo_id.split("/")[-1]
    body = f"""
# {name}

A LoRA adapter for {_model_ref(base_model)} trained with convo on conversations
that teach the model to answer and to ask curious follow-up questions.

## How to use

With [peft](https://github.com/huggingface/peft):

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{base_model}")
model = PeftModel.from_pretrained(base, "{repo_id}")
tokenizer = AutoTokenizer.from_pretrained("{base_model}")
```

With convo:

```python
from convo import ConversationModel

model = ConversationModel.from_pretrained("{base_model}", adapter="{repo_id}")
```
{_prompt_section(prompt)}
## Training data

- File: `{data_file_name}`
- SHA-256: `{data_sha256}`

{_table("Counts", counts, "No counts recorded.")}
{_table("Hyperparameters", hyperparameters, "No hyperparameters recorded.")}
{_table("Metrics", metrics, "No metrics recorded.")}"""
    from huggingface_hub import ModelCard, ModelCardData

    return check_card(_card(ModelCard, ModelCardData(**meta), body))


def _prompt_section(prompt: str | None) -> str:
    if not prompt:
        return ""
    return f"""
## Prompt

The adapter was trained on a completion prompt, not the chat template: the model continues
`Question:` with one question about the last text, ended by the tokenizer's end-of-turn token
(which also closes each worked question). convo's Questions tab builds it for you.

```text
{prompt}
```
"""


def _model_ref(base_model: str) -> str:
    """The base model in Markdown: linked when it is a Hub id, plain code otherwise (a local folder)."""
    if _looks_like_hub_id(base_model):
        return f"[`{base_model}`](https://huggingface.co/{base_model})"
    return f"`{base_model}`"


def dataset_card(*, repo_id: str, config: Mapping[str, Any], counts: Mapping[str, Any]) -> str:
    """README.md for a dataset repo of chat JSONL: YAML header, counts and the generation config as JSON.

    Credential-like keys are dropped from ``config``; raises :class:`HubError` if an ``hf_...`` string remains.
    """
    config, counts = _without_secrets(dict(config)), _without_secrets(dict(counts))
    language = config.get("language") if isinstance(config.get("language"), str) else "en"
    meta = {
        "task_categories": ["text-generation"],
        "language": [language],
        "tags": ["convo", "conversational", "synthetic"],
        "pretty_name": repo_id.split("/")[-1],
    }
    config_json = json.dumps(config, indent=2, ensure_ascii=False, default=str)
    body = f"""
# {repo_id.split("/")[-1]}

Conversations generated with convo, one `{{"messages": [{{"role", "content"}}, ...], "meta": {{...}}}}`
object per line (chat JSONL), ready for fine-tuning in convo's Fine-tune tab or with trl.

```python
from datasets import load_dataset

dataset = load_dataset("{repo_id}")
```

{_table("Counts", counts, "No counts recorded.")}
## Generation config

```json
{config_json}
```
"""
    from huggingface_hub import DatasetCard, DatasetCardData

    return check_card(_card(DatasetCard, DatasetCardData(**meta), body))
