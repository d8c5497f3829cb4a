"""Hugging Face Hub: push LoRA adapters and datasets (their cards: convo.cards), list and download
adapters (a dataset's training files: convo.hub_data).

Every call takes the user's token explicitly and uses it for that call only (never ``login()``, never an
env var write, never logged); the endpoint is read from ``$HF_ENDPOINT`` at call time. Failures become one
:class:`HubError` line a user can act on. Example: ``push_adapter("runs/a1/adapter", "me/curious", token=t)``.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping


__all__ = [
    "ADAPTER_FILES",
    "DEFAULT_ENDPOINT",
    "HubError",
    "SIGN_IN_HELP",
    "adapter_files",
    "download_adapter",
    "hub_endpoint",
    "list_adapters",
    "push_adapter",
    "push_dataset",
    "resolve_token",
    "upload_files",
    "validate_repo_id",
    "whoami",
]

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
SIGN_IN_HELP = (
    "Sign in with the Hugging Face button (on a Space), set HF_TOKEN, or paste a token with write access."
)

# The files that make an adapter usable, and nothing else: no checkpoints, optimizer state, trainer
# logs or job configs (they are large, private to the run, and may hold paths or secrets).
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (
    "adapter_config.json",
    ADAPTER_WEIGHTS,
    "README.md",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
ADAPTER_METADATA = "convo_adapter.json"
"""What convo records beside an adapter it trained (see convo.engine.loading). It is pushed without its
held-out samples and the data's details (``ADAPTER_METADATA_KEPT``): a pushed question-generation
adapter was asked in the chat prompt, its prompt style left behind."""
ADAPTER_METADATA_KEPT = ("base_model", "task", "prompt_style", "hyperparameters", "metrics", "created")
DATASET_SUFFIXES = (".jsonl", ".json")

# Hub repo names: letters, digits, '-', '_', '.'; no '--' or '..'; at most 96 characters each part.
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$")
_HF_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9_]+")


class HubError(Exception):
    """A Hub operation failed; ``str(error)`` is one line telling the user what to do."""


# --------------------------------------------------------------------------- tokens and endpoint


def resolve_token(pasted: str | None = None, oauth_token: Any = None) -> str | None:
    """The token to use for one call: a pasted token, else the OAuth token's ``.token``, else ``$HF_TOKEN``.

    ``oauth_token`` is duck-typed (gradio's ``gr.OAuthToken`` has a ``.token``); returns None when none is set.

    >>> resolve_token("  hf_pasted  ", None)
    'hf_pasted'
    """
    if pasted and pasted.strip():
        return pasted.strip()
    oauth_value = getattr(oauth_token, "token", None)
    if isinstance(oauth_value, str) and oauth_value.strip():
        return oauth_value.strip()
    env_value = os.environ.get("HF_TOKEN", "").strip()
    return env_value or None


def hub_endpoint() -> str:
    """The Hub URL, read from ``$HF_ENDPOINT`` now (huggingface_hub reads it only once, at import)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def validate_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` stripped if it is ``namespace/name``, else raise :class:`HubError`.

    >>> validate_repo_id(" alice/curious-lora ")
    'alice/curious-lora'
    """
    from huggingface_hub.utils import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hub_rules

    cleaned = (repo_id or "").strip()
    try:
        hub_rules(cleaned)  # characters, length, no '--' or '..' (huggingface_hub's own rules)
    except HFValidationError:
        cleaned = ""
    if not _REPO_ID_RE.match(cleaned):  # and ours: a namespace, ASCII only
        raise HubError(f"Invalid repo id '{repo_id}': expected 'user/name'.")
    return cleaned


def check_card(text: str) -> str:
    """Raise if the card text holds anything shaped like a Hugging Face token."""
    if _HF_TOKEN_RE.search(text):
        raise HubError(
            "Refusing to write a card with something shaped like a Hugging Face token (hf_...): "
            "remove it from the settings and try again."
        )
    return text


def _require_token(token: str | None) -> str:
    if not token or not str(token).strip():
        raise HubError(SIGN_IN_HELP)
    return str(token).strip()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _network_message(endpoint: str) -> str:
    return f"Cannot reach the Hugging Face Hub at {endpoint}: check the network connection."


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of the HTTP clients that may be in use (only those installed)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError"),
                         ("requests", "Timeout")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _api(token: str | None):
    """A client bound to the current endpoint and this call's token (``False``: send no token)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint(), token=token if token else False)


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "<token>") if token else text


@contextmanager
def _hub_errors(*, token: str | None, repo_id: str | None = None, writing: bool = True) -> Iterator[None]:
    """Turn huggingface_hub / network exceptions into one-line :class:`HubError` messages."""
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = hub_endpoint()
    if _offline():
        raise HubError(_network_message(endpoint) + " (HF_HUB_OFFLINE is set)")
    target = repo_id or "the repository"
    try:
        yield
    except HubError:
        raise
    except RepositoryNotFoundError as err:
        raise HubError(
            f"Repository {target} was not found on the Hub (or it is private and this token cannot read it)."
        ) from err
    except RevisionNotFoundError as err:
        raise HubError(f"Repository {target} has no such revision on the Hub.") from err
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status == 401:
            raise HubError(
                "The Hugging Face token was rejected (401): check that it is complete, current and not revoked."
            ) from err
        if status == 403 and writing:
            raise HubError(
                f"No permission to write to {target} (403): use a token with write access to that namespace."
            ) from err
        if status == 403:
            raise HubError(f"No permission to read {target} (403): use a token that can read it.") from err
        detail = _redact((err.server_message or str(err)).splitlines()[0].strip(), token)
        raise HubError(f"The Hugging Face Hub refused the request ({status}): {detail}") from err
    except HFValidationError as err:
        raise HubError(f"Invalid repo id '{repo_id}': expected 'user/name'.") from err
    except LocalEntryNotFoundError as err:
        # snapshot_download hides connection failures behind "not in the local cache".
        raise HubError(_network_message(endpoint)) from err
    except _connection_errors() as err:
        raise HubError(_network_message(endpoint)) from err


# --------------------------------------------------------------------------- account


def whoami(token: str | None) -> str:
    """The username the token belongs to.

    Raises :class:`HubError` with :data:`SIGN_IN_HELP` when there is no token, or a 401 message when it is rejected.
    """
    token = _require_token(token)
    with _hub_errors(token=token, writing=False):
        info = _api(token).whoami(token=token)
    return str(info["name"])


# --------------------------------------------------------------------------- uploads


def upload_files(
    repo_id: str,
    files: Mapping[str, str | Path | bytes],
    *,
    token: str | None,
    repo_type: str = "model",
    private: bool = False,
    commit_message: str = "Upload with convo",
    space_sdk: str | None = None,
) -> str:
    """Create the repo if needed and commit exactly ``files`` in one commit; return the repo URL.

    ``files`` maps a path in the repo to a local file or to the bytes to write there. Refuses to
    upload any file that contains the token itself.
    """
    from huggingface_hub import CommitOperationAdd

    repo_id = validate_repo_id(repo_id)
    token = _require_token(token)
    operations = []
    for path_in_repo, source in sorted(files.items()):
        content = source if isinstance(source, bytes) else Path(source).read_bytes()
        if token.encode() in content:
            raise HubError(f"Refusing to upload {path_in_repo}: it contains your Hugging Face token.")
        # Files go by path so the client can stream large weights (LFS/Xet on the real Hub).
        upload = source if isinstance(source, bytes) else str(source)
        operations.append(CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=upload))
    with _hub_errors(token=token, repo_id=repo_id):
        api = _api(token)
        _ensure_repo(api, repo_id, token=token, repo_type=repo_type, private=private, space_sdk=space_sdk)
        api.create_commit(repo_id, operations, commit_message=commit_message, repo_type=repo_type, token=token)
    url = _repo_url(repo_id, repo_type)
    logger.info("Uploaded %d file(s) to %s", len(operations), url)
    return url


def _ensure_repo(api, repo_id: str, *, token: str, repo_type: str, private: bool, space_sdk: str | None) -> None:
    """Create the repo unless it exists already.

    Looks first rather than relying on ``create_repo(exist_ok=True)`` alone: on a 403 that path
    builds its URL from the import-time endpoint and fails against any other ``HF_ENDPOINT``.
    """
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        api.repo_info(repo_id, repo_type=repo_type, token=token)
        return
    except RepositoryNotFoundError:
        pass
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk, token=token)


def _repo_url(repo_id: str, repo_type: str = "model") -> str:
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    return f"{hub_endpoint()}/{prefix}{repo_id}"


def adapter_files(adapter_dir: str | Path) -> dict[str, Path]:
    """The files of an adapter folder that belong on the Hub, as ``{name: path}`` (top level only).

    Raises :class:`HubError` when the folder has no ``adapter_config.json`` or no safetensors weights.
    """
    folder = Path(adapter_dir)
    if not (folder / "adapter_config.json").is_file():
        raise HubError(f"No adapter_config.json in {folder}: choose the folder of a trained LoRA adapter.")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise HubError(f"No {ADAPTER_WEIGHTS} in {folder}: the adapter weights are missing.")
    return {name: folder / name for name in ADAPTER_FILES if (folder / name).is_file()}


def push_adapter(
    adapter_dir: str | Path,
    repo_id: str,
    *,
    token: str | None,
    private: bool = False,
    commit_message: str = "Upload LoRA adapter with convo",
) -> str:
    """Upload a LoRA adapter folder to a model repo (created if missing) and return the repo URL.

    Only :data:`ADAPTER_FILES` present at the top of the folder are sent (config, safetensors weights,
    README.md card, tokenizer files and chat template), and convo's record of the adapter (its prompt
    style, task, base model, settings and metrics: no held-out samples); checkpoints and training
    state stay local.

    >>> push_adapter("runs/a1/adapter", "alice/curious-lora", token=token)  # doctest: +SKIP
    'https://huggingface.co/alice/curious-lora'
    """
    files: dict[str, Path | bytes] = dict(adapter_files(adapter_dir))
    metadata = Path(adapter_dir) / ADAPTER_METADATA
    if metadata.is_file():
        try:
            recorded = json.loads(metadata.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise HubError(f"{ADAPTER_METADATA} in {Path(adapter_dir).name} cannot be read: {exc}") from None
        kept = {key: recorded[key] for key in ADAPTER_METADATA_KEPT if isinstance(recorded, dict) and key in recorded}
        files[ADAPTER_METADATA] = json.dumps(kept, indent=2, ensure_ascii=False).encode("utf-8")
    return upload_files(repo_id, files, token=token, private=private, commit_message=commit_message)


def push_dataset(
    files: list[str | Path],
    repo_id: str,
    *,
    token: str | None,
    private: bool = False,
    card: str,
) -> str:
    """Upload JSON/JSONL data files plus a README.md ``card`` to a dataset repo; return the repo URL."""
    repo_id = validate_repo_id(repo_id)
    token = _require_token(token)
    if not files:
        raise HubError("No data files to push: generate or choose at least one .jsonl/.json file.")
    uploads: dict[str, Path] = {}
    for file in map(Path, files):
        if not file.is_file():
            raise HubError(f"Data file not found: {file}.")
        if file.suffix.lower() not in DATASET_SUFFIXES:
            raise HubError(f"Cannot push {file.name}: only .jsonl and .json data files are uploaded.")
        if file.name in uploads:
            raise HubError(f"Two data files are named {file.name}: rename one before pushing.")
        uploads[file.name] = file
    uploads_and_card = {**uploads, "README.md": check_card(card).encode("utf-8")}
    return upload_files(
        repo_id, uploads_and_card, token=token, repo_type="dataset", private=private,
        commit_message="Upload dataset with convo",
    )


# --------------------------------------------------------------------------- listing and downloads


def list_adapters(token: str | None) -> list[str]:
    """The signed-in user's model repos that are PEFT adapters, sorted by id.

    A repo counts when its library is ``peft``, it is tagged ``peft``, or it holds ``adapter_config.json``.
    """
    token = _require_token(token)
    user = whoami(token)
    with _hub_errors(token=token, writing=False):
        models = list(_api(token).list_models(author=user, full=True, token=token))
    adapters = []
    for model in models:
        names = {s.rfilename for s in (model.siblings or [])}
        if model.library_name == "peft" or "peft" in (model.tags or []) or "adapter_config.json" in names:
            adapters.append(model.id)
    return sorted(adapters)


def download_adapter(repo_id: str, *, token: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """Download an adapter's files from the Hub (into the HF cache) and return the local folder.

    ``token`` is optional (public adapters); without one, ``$HF_TOKEN`` is used if set.
    """
    from huggingface_hub import snapshot_download

    repo_id = validate_repo_id(repo_id)
    token = resolve_token(token)
    with _hub_errors(token=token, repo_id=repo_id, writing=False):
        folder = snapshot_download(
            repo_id,
            allow_patterns=[*ADAPTER_FILES, ADAPTER_METADATA],
            endpoint=hub_endpoint(),
            token=token if token else False,
            cache_dir=str(cache_dir) if cache_dir is not None else _cache_dir(),
        )
    path = Path(folder)
    if not (path / "adapter_config.json").is_file():
        raise HubError(f"{repo_id} is not a PEFT adapter: it has no adapter_config.json.")
    return path


def _cache_dir() -> str | None:
    """The Hub cache from the environment now (huggingface_hub reads it only at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None

