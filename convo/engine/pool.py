"""One shared, thread-safe pool of loaded models within a memory budget (least recently used evicted).

``get_model(ModelSpec(...))`` returns the process-wide copy of a model, loading it on first use:
a local one through ``convo.engine.loading``, a server or Inference Providers model through
``convo.engine.remote`` (nothing to load).
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict

from ..settings import ModelSpec, default_model_name
from ..threads import run_in_fresh_thread
from .loading import LoadedModel, load_model

log = logging.getLogger(__name__)


def load(spec: ModelSpec) -> LoadedModel:
    """Load ``spec``: a declared server or an Inference Providers model connects, anything else loads."""
    from . import remote

    if remote.is_remote(spec.name):
        return remote.load_remote(spec)
    return load_model(spec)


def default_budget_bytes() -> int:
    """Memory the pool may fill before evicting: ``$CONVO_MODEL_BUDGET_GB`` or half the RAM."""
    if os.environ.get("CONVO_MODEL_BUDGET_GB"):
        return int(float(os.environ["CONVO_MODEL_BUDGET_GB"]) * 2**30)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


class ModelPool:
    """Thread-safe, process-wide cache of loaded models with least-recently-used eviction.

    Two sessions asking for the same spec at once share one load (a per-spec lock), and a
    model is evicted only to make room for another within the memory budget.
    """

    def __init__(self, budget_bytes: int | None = None):
        self.budget_bytes = budget_bytes if budget_bytes is not None else default_budget_bytes()
        self._models: OrderedDict[ModelSpec, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[ModelSpec, threading.Lock] = {}

    def get(self, spec: ModelSpec) -> LoadedModel:
        with self._lock:
            if spec in self._models:
                self._models.move_to_end(spec)
                return self._models[spec]
            spec_lock = self._loading.setdefault(spec, threading.Lock())
        with spec_lock:
            with self._lock:
                if spec in self._models:
                    return self._models[spec]
            # a thread that exits: its OpenMP team does not outlive the load (see convo.threads)
            loaded = run_in_fresh_thread(load, spec)
            with self._lock:
                self._models[spec] = loaded
                self._evict_over_budget(keep=spec)
                self._loading.pop(spec, None)
            return loaded

    def _evict_over_budget(self, keep: ModelSpec) -> None:
        while sum(m.nbytes for m in self._models.values()) > self.budget_bytes and len(self._models) > 1:
            oldest = next(s for s in self._models if s != keep)
            log.info("Evicting %s from the model pool", oldest.label)
            self._models.pop(oldest).release()

    def loaded(self) -> list[ModelSpec]:
        with self._lock:
            return list(self._models)

    def clear(self) -> None:
        with self._lock:
            models, self._models = list(self._models.values()), OrderedDict()
        for model in models:
            model.release()


POOL = ModelPool()


def get_model(spec: ModelSpec | str | None = None) -> LoadedModel:
    """The shared copy of a model, loading it on first use.

    >>> lm = get_model("bundled")  # doctest: +SKIP
    """
    if spec is None:
        spec = ModelSpec(default_model_name())
    elif isinstance(spec, str):
        spec = ModelSpec(spec)
    return POOL.get(spec)


