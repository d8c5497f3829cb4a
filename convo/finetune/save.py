"""Saving a trained adapter: its files and metadata moved into place in one step, its model card,
and the push to the Hub (the token used for that one call only).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from ..data import TASK_PROMPT_STYLES
from ..settings import BUNDLED, BUNDLED_HUB_ID
from .config import METADATA_FILE


def slug(text: str) -> str:
    """A safe folder name: letters, digits, '-', '_' and '.'.

    >>> slug("Qwen/Qwen2.5 0.5B!")
    'Qwen-Qwen2.5-0.5B'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "adapter"


def save_adapter(peft_model, tokenizer, output_dir: str | Path, *, base_model: str, task: str | None,
                 data_info: dict, hyperparameters: dict, metrics: dict, samples: list[dict] | None = None,
                 staging: str | Path | None = None, repo_id: str | None = None) -> Path:
    """Write the adapter folder: peft files, tokenizer, ``convo_adapter.json`` and a README.md card.

    Everything is written to ``staging`` first and moved into place at the end, so a crash never
    leaves a half-written adapter where the app lists adapters.
    """
    output_dir = Path(output_dir)
    staging = Path(staging) if staging else output_dir.with_name(f".{output_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    peft_model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    _set_base_in_adapter_config(staging / "adapter_config.json", base_model)
    metadata = {"base_model": base_model, "task": task, "prompt_style": TASK_PROMPT_STYLES.get(task or "", "chat"),
                **data_info, "hyperparameters": hyperparameters, "metrics": metrics, "samples": samples or [],
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2, ensure_ascii=False))
    # before a push, the folder by its name (next to where it was saved: "local/..." was no path at
    # all); a push writes the card again for its repo id. Never a server's whole path: cards are pushed
    write_card(staging, repo_id or f"./{output_dir.name}")
    _as_umask_allows(staging)
    _move_into_place(staging, output_dir)
    return output_dir


def hub_base_model(base_model: str) -> str:
    """What another tool should load as the base: the Hub id for ``bundled``, else the name given."""
    return BUNDLED_HUB_ID if base_model == BUNDLED else base_model


def _set_base_in_adapter_config(config_path: Path, base_model: str) -> None:
    # peft records the folder the base was read from (for "bundled", a path in this user's cache);
    # record a name that means something on another machine instead.
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = hub_base_model(base_model)
    config_path.write_text(json.dumps(config, indent=2))


def _as_umask_allows(folder: Path) -> None:
    # safetensors writes its file through a private temporary (mode 0600) and keeps that mode: the
    # adapter's weights alone could not be read by the other users of a shared machine, or by a group
    # the folder is shared with, while every other file of the adapter could. They get the mode the
    # user's umask gave the adapter's config (os.umask would have to set it to read it: not while
    # other threads write files).
    mode = (folder / "adapter_config.json").stat().st_mode & 0o666
    for path in folder.glob("*.safetensors"):
        try:
            if not path.is_symlink():
                os.chmod(path, mode)
        except OSError:  # a file system that keeps no modes (some network or FUSE mounts): the adapter is kept
            pass


def _move_into_place(staging: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    try:
        shutil.move(str(staging), str(target))
    except BaseException:
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_metadata(adapter_dir: str | Path) -> dict:
    """The ``convo_adapter.json`` of an adapter folder ({} when there is none)."""
    from ..engine.loading import adapter_metadata

    return adapter_metadata(adapter_dir)


def write_card(adapter_dir: str | Path, repo_id: str) -> str:
    """(Re)write the adapter's README.md for ``repo_id`` from its ``convo_adapter.json``."""
    from ..cards import adapter_card

    meta = read_metadata(adapter_dir)
    card = adapter_card(repo_id=repo_id, base_model=hub_base_model(meta.get("base_model", "")),
                        data_file_name=meta.get("train_file", ""), data_sha256=meta.get("train_sha256", ""),
                        counts=meta.get("counts", {}), hyperparameters=meta.get("hyperparameters", {}),
                        metrics=meta.get("metrics", {}), prompt=_card_prompt(meta.get("prompt_style")))
    (Path(adapter_dir) / "README.md").write_text(card)
    return card


def _card_prompt(prompt_style: str | None) -> str | None:
    if prompt_style != "fewshot":
        return None
    from ..data import fewshot_text

    return fewshot_text("<the sentence to ask about>", end="<end-of-turn>")


def push_adapter_to_hub(adapter_dir: str | Path, repo_id: str, *, token: str | None, private: bool = True) -> str:
    """Rewrite the card for ``repo_id`` and upload only the adapter files and the card; return the URL.

    The token is used for this call only (convo.hub never stores or logs it).
    """
    from ..hub import HubError, push_adapter, validate_repo_id

    repo_id = validate_repo_id(repo_id)
    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise HubError(f"No adapter_config.json in {adapter_dir}: train an adapter first.")
    write_card(adapter_dir, repo_id)
    return push_adapter(adapter_dir, repo_id, token=token, private=private)
