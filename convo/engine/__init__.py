"""The engine: everything that turns token ids into token ids, and nothing about chats.

hardware (device, CPU features), prompts (stop ids), loading (bundled default, Hub ids, local
folders, adapters, 4-bit), pool (one shared copy of each model), programs (Stop, multi-step
programs), generation (streaming, batched, scoring), fastpath (the CPU decoder and its
continuous-batching scheduler), remote (OpenAI-compatible servers and Inference Providers).
Importing this package loads no torch; ``generation``, ``fastpath`` and ``remote`` are imported
by name where needed.
"""
from __future__ import annotations

from .hardware import cpu_computes_bf16, pick_device
from .loading import (LoadedModel, ModelLoadError, adapter_base, bundled_gguf_path, bundled_model_dir,
                      load_model)
from .pool import POOL, ModelPool, get_model

__all__ = ["POOL", "LoadedModel", "ModelLoadError", "ModelPool", "adapter_base", "bundled_gguf_path",
           "bundled_model_dir", "cpu_computes_bf16", "get_model", "load_model", "pick_device"]
