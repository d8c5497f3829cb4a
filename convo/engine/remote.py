"""Remote engines: OpenAI-compatible servers (vLLM, TGI, SGLang, llama.cpp, Ollama, ``transformers serve``)
and Hugging Face Inference Providers, behind the calls the in-process engine answers (stream with Stop,
many replies at once, pipelines of multi-step programs, scores where the server gives log-probabilities).

Operators declare endpoints in ``$CONVO_ENDPOINTS`` (JSON text, or the path of a JSON/YAML file)::

    [{"name": "vllm", "base_url": "http://gpu-box:8000/v1", "model": "Qwen/Qwen2.5-7B-Instruct",
      "api_key_env": "VLLM_API_KEY", "concurrency": 32}]

and users name them ``remote:vllm``; ``hf:<model id>[:provider]`` is a model on Inference Providers, billed
to the signed-in user's token (``RemoteModel.with_token``) or ``$HF_TOKEN``. There is no way to name a URL
directly: a visitor of a public app cannot make the server call an address the operator did not declare.
API keys are read from the environment at each call and never stored.

Why one module: every call to a server shares one retry, error-explaining and logprob-cache path;
the client, the prompts and the pipeline over them change together.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .programs import cut_at_stop
from .loading import LoadedModel, ModelLoadError
from ..settings import ModelSpec, Sampling

log = logging.getLogger(__name__)

ENDPOINTS_ENV = "CONVO_ENDPOINTS"
REMOTE_PREFIX = "remote:"
PROVIDERS_PREFIX = "hf:"
PROVIDERS_URL = "https://router.huggingface.co/v1"  # Inference Providers' OpenAI-compatible router
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
CONTINUE_NOTE = "Continue the text below. Write only what comes next, in the same format:"
_OPEN, _CLOSE = "\x1e<convo-chat>", "</convo-chat>\x1e"


class RemoteError(RuntimeError):
    """A remote engine failed (unreachable, refused, answered an error); the message is one line a user
    can act on, and never holds an API key."""


@dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible server (or an Inference Providers model) the app may call."""

    name: str
    """What users pick: ``remote:<name>``."""
    base_url: str | None = None
    """The server's OpenAI API root, e.g. ``http://127.0.0.1:8000/v1``; None for Inference Providers."""
    model: str = ""
    """The ``model`` field of each request (vLLM/TGI: the served model; llama.cpp ignores it)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (read at each call, never stored)."""
    provider: str | None = None
    """Inference Providers only: ``auto`` or a provider name (``together``, ``novita``, ...)."""
    concurrency: int = 16
    """Requests in flight at once for many-reply calls (the server batches them)."""
    timeout: float = 120.0
    """Seconds to wait for the server (to connect, and between streamed pieces)."""
    retries: int = 4
    """Retries with exponential backoff on 429/5xx, timeouts and refused connections."""
    context_length: int = 8192
    """Tokens the served model attends to (used to size question-generation chunks)."""
    continue_final_message: bool = False
    """The server continues a trailing assistant message (vLLM: ``continue_final_message``); else a
    pre-started reply is asked for with an instruction and the echo is cut."""
    extra_sampling: bool = False
    """Also send ``top_k`` and ``repetition_penalty`` (vLLM, llama.cpp, SGLang accept them; the OpenAI
    protocol and ``transformers serve`` do not)."""
    logprobs: bool = True
    """Ask for token log-probabilities (used to rank follow-up questions where the server returns them)."""
    generation_config: bool = False
    """Also send the sampling settings as a transformers ``generation_config`` (``transformers serve``: it
    samples only when told ``do_sample``, so without this every reply is greedy whatever the temperature,
    and follow-up candidates all come out the same)."""

    def __post_init__(self):
        where = f"endpoint '{self.name}'"
        if not isinstance(self.name, str) or not self.name.strip() or ":" in self.name:
            raise ValueError(f"endpoint name: expected a non-empty name without ':', got {self.name!r}")
        if self.provider is None:
            if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
                raise ValueError(f"{where}.base_url: expected an http(s):// URL, got {self.base_url!r}")
        if not isinstance(self.model, str):
            raise ValueError(f"{where}.model: expected a string, got {type(self.model).__name__}")
        if self.api_key_env is not None and (not isinstance(self.api_key_env, str) or not self.api_key_env.isidentifier()):
            raise ValueError(f"{where}.api_key_env: expected the NAME of an environment variable, got a value "
                             "that is not one (put the key itself in the environment, never in this file)")
        if not isinstance(self.concurrency, int) or not 1 <= self.concurrency <= 1024:
            raise ValueError(f"{where}.concurrency: expected 1 to 1024, got {self.concurrency!r}")
        if not isinstance(self.retries, int) or not 0 <= self.retries <= 20:
            raise ValueError(f"{where}.retries: expected 0 to 20, got {self.retries!r}")
        if not isinstance(self.timeout, (int, float)) or self.timeout <= 0:
            raise ValueError(f"{where}.timeout: expected seconds > 0, got {self.timeout!r}")

    @property
    def where(self) -> str:
        """Where requests go, for messages (never with a key)."""
        return self.base_url or f"Inference Providers ({self.provider})"


def is_remote(name: str | None) -> bool:
    """Does this model name pick a remote engine?"""
    return bool(name) and name.strip().startswith((REMOTE_PREFIX, PROVIDERS_PREFIX))


def parse_endpoints(data: Any, origin: str = ENDPOINTS_ENV) -> dict[str, Endpoint]:
    """A list of endpoint records (or ``{"endpoints": [...]}``) -> ``{name: Endpoint}``; errors name the record and field."""
    if isinstance(data, dict) and "endpoints" in data:
        data = data["endpoints"]
    if not isinstance(data, list):
        raise ValueError(f"{origin}: expected a list of endpoints, got {type(data).__name__}")
    known = {f.name for f in fields(Endpoint)} - {"provider"}
    endpoints: dict[str, Endpoint] = {}
    for i, record in enumerate(data):
        if not isinstance(record, dict):
            raise ValueError(f"{origin}[{i}]: expected an object with name, base_url, model")
        if "api_key" in record:
            raise ValueError(f"{origin}[{i}].api_key: give api_key_env, the name of a variable holding the key")
        unknown = sorted(set(record) - known)
        if unknown:
            raise ValueError(f"{origin}[{i}].{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
        try:
            endpoint = Endpoint(**{**record, "provider": None})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{origin}[{i}]: {exc}") from None
        if endpoint.name in endpoints:
            raise ValueError(f"{origin}[{i}].name: '{endpoint.name}' is declared twice")
        endpoints[endpoint.name] = endpoint
    return endpoints


def declared_endpoints() -> dict[str, Endpoint]:
    """The endpoints ``$CONVO_ENDPOINTS`` declares (JSON text or a JSON/YAML file); empty when unset."""
    value = os.environ.get(ENDPOINTS_ENV, "").strip()
    if not value:
        return {}
    if value.startswith(("[", "{")):
        return parse_endpoints(json.loads(value))
    path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{ENDPOINTS_ENV}: cannot read {path} ({type(exc).__name__})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        return parse_endpoints(yaml.safe_load(text), str(path))
    return parse_endpoints(json.loads(text), str(path))


def remote_choices() -> list[str]:
    """Declared endpoints as model-bar choices (``remote:<name>``); none when the declaration is broken."""
    try:
        return [REMOTE_PREFIX + name for name in declared_endpoints()]
    except ValueError as exc:
        log.warning("Ignoring %s: %s", ENDPOINTS_ENV, exc)
        return []


def endpoint_for(name: str) -> Endpoint:
    """``remote:<declared name>`` or ``hf:<model id>[:provider]`` -> its Endpoint (ModelLoadError otherwise)."""
    name = name.strip()
    if name.startswith(PROVIDERS_PREFIX):
        model, _, provider = name[len(PROVIDERS_PREFIX):].partition(":")
        if not model or model.count("/") != 1:
            raise ModelLoadError(f"Could not use '{name}': expected hf:<owner>/<model>[:provider].")
        return Endpoint(name=model.replace("/", "--"), model=model, provider=provider or "auto")
    try:
        endpoints = declared_endpoints()
    except ValueError as exc:
        raise ModelLoadError(f"Could not use '{name}': {exc}") from None
    wanted = name[len(REMOTE_PREFIX):]
    if wanted not in endpoints:
        known = ", ".join(REMOTE_PREFIX + n for n in endpoints) or f"none (set {ENDPOINTS_ENV})"
        raise ModelLoadError(f"Could not use '{name}': no such remote endpoint is declared. Declared: {known}.")
    return endpoints[wanted]


class ApproxTokenizer:
    """Stands in for a tokenizer where only lengths are needed (sizing passage chunks): about one token per
    four characters of a word, one per punctuation mark, which overestimates real BPE counts a little."""

    chat_template = None
    eos_token = None
    eos_token_id = None
    pad_token_id = None

    def __call__(self, texts, add_special_tokens: bool = False, **_kwargs) -> dict:
        import re

        many = not isinstance(texts, str)
        ids = [[0] * len(re.findall(r"\w{1,4}|[^\w\s]", text)) for text in (texts if many else [texts])]
        return {"input_ids": ids if many else ids[0]}

    def get_vocab(self) -> dict:
        return {}


@dataclass
class RemoteModel(LoadedModel):
    """A remote engine where a LoadedModel is expected (``get_model("remote:<name>")`` returns one)."""

    endpoint: Endpoint | None = None
    token: str | None = field(default=None, repr=False)
    """A signed-in user's token for Inference Providers; set per request with ``with_token``, never pooled."""
    _logprobs: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _logprobs_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    remote = True

    @property
    def context_length(self) -> int:
        return self.endpoint.context_length

    @property
    def request_model(self) -> str:
        """The request's ``model`` field: a LoRA adapter's served name (vLLM ``--lora-modules name=path``
        names it after the adapter folder) or the endpoint's model."""
        if self.spec.adapter:
            return Path(self.spec.adapter).name or self.spec.adapter
        if self.endpoint.provider not in (None, "auto"):
            return f"{self.endpoint.model}:{self.endpoint.provider}"  # the router's provider pick
        return self.endpoint.model

    def with_token(self, token: str | None) -> "RemoteModel":
        """This model, its Inference Providers calls billed to ``token`` (a copy; the pooled one has none)."""
        return replace(self, token=token or None, _logprobs=self._logprobs, _logprobs_lock=self._logprobs_lock)

    def release(self) -> None:  # nothing held locally
        return None

    def remember_logprob(self, text: str, logprob: float) -> None:
        with self._logprobs_lock:
            self._logprobs[text] = logprob
            while len(self._logprobs) > 512:
                self._logprobs.popitem(last=False)

    def logprob_of(self, piece: str) -> float | None:
        """The mean token log-probability of a recent reply containing ``piece``, if the server gave one."""
        with self._logprobs_lock:
            for text, value in reversed(self._logprobs.items()):
                if piece in text:
                    return value
        return None


def load_remote(spec: ModelSpec) -> RemoteModel:
    """The RemoteModel a spec names (nothing is contacted yet: the first request tells if the server is up)."""
    endpoint = endpoint_for(spec.name)
    return RemoteModel(spec=spec, model=None, tokenizer=ApproxTokenizer(), is_seq2seq=False, device="remote",
                       endpoint=endpoint)


def for_user(lm, token: str | None):
    """``lm`` with a signed-in user's token for Inference Providers models; other models unchanged."""
    if getattr(lm, "remote", False) and lm.endpoint.provider is not None and token:
        return lm.with_token(token)
    return lm


# --------------------------------------------------------------------------- prompts


def render_prompt(messages: Sequence[dict]) -> str:
    """A remote model's "prompt": the messages, kept whole so they go out as chat messages. Text appended
    to it (a pre-started reply, as synth's script programs do) is the start of the assistant's answer."""
    return _OPEN + json.dumps(list(messages), ensure_ascii=False) + _CLOSE


def parse_prompt(prompt: str) -> tuple[list[dict], str]:
    """``render_prompt(messages) + prefill`` -> ``(messages, prefill)``; plain text is one user message."""
    if prompt.startswith(_OPEN) and _CLOSE in prompt:
        body, _, prefill = prompt[len(_OPEN):].partition(_CLOSE)
        return json.loads(body), prefill
    return [{"role": "user", "content": prompt}], ""


def _with_prefill(endpoint: Endpoint, messages: list[dict], prefill: str) -> tuple[list[dict], dict]:
    """Messages (and extra request fields) asking for a reply that continues ``prefill``."""
    if not prefill:
        return messages, {}
    if endpoint.continue_final_message:
        return messages + [{"role": "assistant", "content": prefill}], \
            {"continue_final_message": True, "add_generation_prompt": False}
    last = messages[-1] if messages else {"role": "user", "content": ""}
    if last["role"] != "user":
        return messages + [{"role": "user", "content": f"{CONTINUE_NOTE}\n{prefill}"}], {}
    asked = {"role": "user", "content": f"{last['content']}\n\n{CONTINUE_NOTE}\n{prefill}"}
    return messages[:-1] + [asked], {}


def cut_echo(reply: str, prefill: str) -> str:
    """Drop the part of ``prefill`` a model repeated at the start of its continuation.

    >>> cut_echo("TEACHER: Clouds get heavy.", "STUDENT: Why?\\nTEACHER:")
    ' Clouds get heavy.'
    """
    lines = prefill.strip().splitlines()
    start = reply.lstrip()
    for k in range(len(lines), 0, -1):
        tail = "\n".join(lines[-k:]).strip()
        if tail and start.startswith(tail):
            return start[len(tail):]
    return reply


# --------------------------------------------------------------------------- requests


def _api_key(lm: RemoteModel) -> str:
    endpoint = lm.endpoint
    if endpoint.provider is not None:
        # On a Space each visitor pays with their own sign-in: never with the operator's HF_TOKEN secret.
        token = lm.token or (None if os.environ.get("SPACE_ID") else os.environ.get("HF_TOKEN"))
        if not token:
            raise RemoteError(f"'{lm.spec.name}' runs on Inference Providers: sign in with Hugging Face "
                              "(or set HF_TOKEN when running locally) so the calls are billed to you.")
        return token
    if endpoint.api_key_env:
        key = os.environ.get(endpoint.api_key_env)
        if not key:
            raise RemoteError(f"Remote model '{lm.spec.name}': the API key variable ${endpoint.api_key_env} is not set.")
        return key
    return "none"  # never fall back to the user's Hugging Face token for a third-party server


def _client(lm: RemoteModel):
    """A fresh OpenAI client for one call (its retries are ours, see ``_retrying``). The openai client, not
    huggingface_hub's InferenceClient: that one shares the Hub session, which HF_HUB_OFFLINE=1 blocks even
    for a server on localhost."""
    import openai

    endpoint = lm.endpoint
    base_url = endpoint.base_url
    if endpoint.provider is not None:
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
            raise RemoteError(f"'{lm.spec.name}' runs on Inference Providers, and HF_HUB_OFFLINE is set.")
        base_url = os.environ.get("CONVO_PROVIDERS_URL") or PROVIDERS_URL
    return openai.OpenAI(base_url=base_url, api_key=_api_key(lm), timeout=endpoint.timeout, max_retries=0)


def _request(lm: RemoteModel, messages: list[dict], sampling: Sampling, seed: int | None, logprobs: bool) -> dict:
    """chat_completion arguments for one reply (extra_body only with what this server accepts)."""
    endpoint = lm.endpoint
    request: dict = {"messages": messages, "model": lm.request_model, "max_tokens": sampling.max_new_tokens,
                     "temperature": sampling.temperature if sampling.do_sample else 0.0}
    if sampling.do_sample:
        request["top_p"] = sampling.top_p
    if sampling.stop:
        request["stop"] = list(sampling.stop)
    if seed is not None:
        request["seed"] = seed
    if logprobs and endpoint.logprobs:
        request["logprobs"] = True
    if endpoint.extra_sampling:
        request["extra_body"] = {"repetition_penalty": sampling.repetition_penalty,
                                 **({"top_k": sampling.top_k} if sampling.do_sample and sampling.top_k else {})}
    if endpoint.generation_config:
        config = json.dumps(_generation_config(sampling))
        request["extra_body"] = {**request.get("extra_body", {}), "generation_config": config}
    return request


def _generation_config(sampling: Sampling) -> dict:
    """The sampling settings as transformers ``GenerationConfig`` fields (unset ones keep the model's own)."""
    config: dict = {"do_sample": sampling.do_sample, "repetition_penalty": sampling.repetition_penalty}
    if sampling.do_sample:
        config.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
    return config


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else getattr(getattr(exc, "response", None), "status_code", None)


def _retryable(exc: BaseException) -> bool:
    import openai

    status = _status(exc)
    if status is not None:
        return status in RETRY_STATUSES
    if isinstance(exc, (openai.APIConnectionError, TimeoutError, ConnectionError)):  # timeouts too
        return True
    module = type(exc).__module__ or ""
    # connection refused / reset, a stream cut mid-answer, read timeouts (the http client's transport errors)
    return module.startswith(("httpx", "httpcore")) or isinstance(exc, OSError)


def explain(lm: RemoteModel, exc: BaseException, tries: int = 1) -> RemoteError:
    """One line for the user: which model, where, what went wrong, what to do."""
    if isinstance(exc, RemoteError):
        return exc
    what = f"Remote model '{lm.spec.label}' at {lm.endpoint.where}"
    after = f" (after {tries} tries)" if tries > 1 else ""
    status = _status(exc)
    if status in (401, 403):
        key = f"${lm.endpoint.api_key_env}" if lm.endpoint.api_key_env else "the API key"
        return RemoteError(f"{what} refused the request (HTTP {status}): check {key}.")
    if status == 404:
        return RemoteError(f"{what} does not serve model '{lm.request_model}' (HTTP 404).")
    if status == 429:
        return RemoteError(f"{what} is rate-limiting requests (HTTP 429){after}; try again later or lower the concurrency.")
    if status is not None and status >= 500:
        return RemoteError(f"{what} answered with a server error (HTTP {status}){after}.")
    if status is not None:
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return RemoteError(f"{what} rejected the request (HTTP {status}): {detail}")
    text = " ".join(f"{type(e).__name__}: {e}" for e in _causes(exc)).lower()
    if "timeout" in text or "timed out" in text:
        return RemoteError(f"{what} did not answer within {lm.endpoint.timeout:g} s{after}.")
    if "refused" in text or "connecterror" in text or "name or service" in text or "resolve" in text:
        return RemoteError(f"{what} is unreachable{after}: is the server running?")
    return RemoteError(f"{what} broke off the connection{after} ({type(exc).__name__}).")


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it (the client wraps transport errors)."""
    chain = []
    while exc is not None and len(chain) < 6:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _backoff(attempt: int, exc: BaseException) -> float:
    retry_after = getattr(getattr(exc, "response", None), "headers", {}) or {}
    try:
        wanted = float(retry_after.get("retry-after", "")) if hasattr(retry_after, "get") else 0.0
    except ValueError:
        wanted = 0.0
    base = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** attempt)
    return min(MAX_BACKOFF_S, max(wanted, base * (0.5 + random.random() / 2)))


def _retrying(lm: RemoteModel, call: Callable[[], Any], stop=None) -> Any:
    """``call()``, retried with exponential backoff (honouring Retry-After) on 429/5xx, timeouts and
    broken connections; anything else, or the last failure, becomes one RemoteError line."""
    retries = lm.endpoint.retries
    for attempt in range(retries + 1):
        try:
            return call()
        except RemoteError:
            raise
        except Exception as exc:
            if attempt == retries or not _retryable(exc) or (stop is not None and stop.is_set()):
                raise explain(lm, exc, attempt + 1) from None
            log.info("Remote %s: %s; retrying", lm.spec.name, type(exc).__name__)
            time.sleep(_backoff(attempt, exc))


def _mean_logprob(choice) -> float | None:
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    values = [t.logprob for t in content if getattr(t, "logprob", None) is not None]
    return sum(values) / len(values) if values else None


def complete(lm: RemoteModel, prompt: str, sampling: Sampling, seed: int | None = None, stop=None) -> str:
    """The whole reply to one rendered prompt (retried as needed)."""
    messages, prefill = parse_prompt(prompt)
    messages, extra = _with_prefill(lm.endpoint, messages, prefill)
    request = _request(lm, messages, sampling, seed, logprobs=True)
    if extra:
        request["extra_body"] = {**request.get("extra_body", {}), **extra}
    if prefill and not lm.endpoint.continue_final_message:
        request.pop("stop", None)  # the reply may repeat the prefill first: cut after cut_echo, below

    def call():
        with _client(lm) as client:
            return client.chat.completions.create(**request)

    output = _retrying(lm, call, stop)
    if not getattr(output, "choices", None):
        raise RemoteError(f"Remote model '{lm.spec.label}' at {lm.endpoint.where} answered without a reply.")
    choice = output.choices[0]
    text = choice.message.content or ""
    if prefill and not lm.endpoint.continue_final_message:
        text = cut_echo(text, prefill)
    text = cut_at_stop(text, sampling.stop)  # not every server honours ``stop`` (or all four of them)
    logprob = _mean_logprob(choice)
    if logprob is not None:
        lm.remember_logprob(text.strip(), logprob)
    return text.strip()


def stream(lm: RemoteModel, messages: list[dict], sampling: Sampling, stop, prompt: str | None = None) -> Iterator[str]:
    """Yield the reply piece by piece; setting ``stop`` (or closing this iterator) closes the HTTP stream.
    Opening the stream is retried; a stream cut after text was shown ends with a RemoteError. (The stop
    strings are asked of the server; ``generation.stream`` also cuts at them, as not every server honours them.)"""
    prefill = ""
    if prompt is not None:
        messages, prefill = parse_prompt(prompt)
    messages, extra = _with_prefill(lm.endpoint, messages, prefill)
    request = _request(lm, messages, sampling, sampling.seed, logprobs=False)
    if extra:
        request["extra_body"] = {**request.get("extra_body", {}), **extra}
    client = None

    def open_stream():
        nonlocal client
        client = _client(lm)
        try:
            pieces = client.chat.completions.create(**request, stream=True)
            return pieces, next(iter(pieces), None)  # the first chunk proves the server answers
        except BaseException:
            client.close()
            raise

    pieces, first = _retrying(lm, open_stream, stop)
    shown = False
    try:
        for chunk in _chain(first, pieces):
            if stop.is_set():
                return
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if delta:
                shown = True
                yield delta
    except RemoteError:
        raise
    except Exception as exc:
        error = explain(lm, exc)
        raise RemoteError(str(error).replace(" broke off the connection", " broke off the reply mid-way")
                          if shown else str(error)) from None
    finally:
        pieces.close()  # closes the HTTP response: the server sees the client go and stops generating
        client.close()


def _chain(first, rest) -> Iterator:
    if first is not None:
        yield first
        yield from rest


def generate_batch(lm: RemoteModel, prompts: Sequence[str], sampling: Sampling, stop=None) -> list[str]:
    """Replies to many prompts, ``endpoint.concurrency`` requests in flight (the server batches them)."""
    if not prompts:
        return []
    seeds = [None if sampling.seed is None else sampling.seed + i for i in range(len(prompts))]
    with ThreadPoolExecutor(max_workers=min(lm.endpoint.concurrency, len(prompts)),
                            thread_name_prefix="convo-remote") as pool:
        futures = [pool.submit(_unless_stopped, lm, p, sampling, s, stop) for p, s in zip(prompts, seeds)]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _unless_stopped(lm, prompt, sampling, seed, stop) -> str:
    if stop is not None and stop.is_set():
        return ""
    return complete(lm, prompt, sampling, seed, stop)


def continuation_logprobs(lm: RemoteModel, continuations: Sequence[str]) -> list[float]:
    """Scores for ranking: the mean token log-probability of the generated reply each continuation came
    from, where the server returned log-probabilities (vLLM, TGI, llama.cpp, OpenAI); the OpenAI chat
    protocol cannot score a given text. Where none were returned (``transformers serve``) every score is
    0.0 and the ranking keeps the order the filters left (first generated first)."""
    found = [lm.logprob_of(c.strip()) for c in continuations]
    known = [v for v in found if v is not None]
    floor = min(known) if known else 0.0
    return [floor if v is None else v for v in found]


def pipeline(lm: RemoteModel, source, sampling: Sampling, width: int, stop=None) -> Iterator:
    """``generation.pipeline`` on a remote engine: ``width`` programs at once, each step's requests sent as
    soon as its previous replies are in. A request that fails after its retries ends the pipeline with a
    RemoteError (programs in flight are dropped, finished ones were already yielded)."""
    from .programs import _Running, drive_pipeline, sampling_for

    pool = ThreadPoolExecutor(max_workers=min(width * 2, max(width, lm.endpoint.concurrency)),
                              thread_name_prefix="convo-remote")
    notify: queue.Queue = queue.Queue()
    owners: dict[Future, tuple[_Running, int]] = {}

    def submit(running: _Running) -> None:
        running.requests, running.pending = [None] * len(running.prompts), len(running.prompts)
        for index, text in enumerate(running.prompts):
            seed = None if sampling.seed is None else sampling.seed + running.seed + running.asked
            future = pool.submit(complete, lm, text, sampling_for(text, sampling), seed, stop)
            owners[future] = (running, index)
            future.add_done_callback(notify.put)
            running.asked += 1

    def one_ended() -> _Running:
        future = notify.get()
        running, index = owners.pop(future)
        running.requests[index] = future.result()  # a RemoteError ends the pipeline here
        return running

    try:
        yield from drive_pipeline(source, width, stop, submit, one_ended, lambda running: running.requests)
    finally:
        for future in owners:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
