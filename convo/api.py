"""``ConversationModel``: the three-call Python API over the engine the app uses.

>>> from convo import ConversationModel                                    # doctest: +SKIP
>>> m = ConversationModel.from_pretrained("bundled")                        # doctest: +SKIP
>>> m.generate(context=["Hello", "Hi, how are you?", "Good, thanks! And you?"]).responses[0]  # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from . import chat
from .engine import generation
from .engine import LoadedModel, get_model
from .settings import ChatSettings, LoraSettings, ModelSpec, Sampling, model_sampling

Context = Sequence[str] | Sequence[dict]


@dataclass
class GenerationOutput:
    """What ``generate`` returns: the candidate replies and the conversation they answer."""

    responses: list[str]
    context: list[dict]


def to_messages(context: Context, system_prompt: str | None = None) -> list[dict]:
    """Plain strings alternate user/assistant, starting with the user; message dicts pass through.

    >>> to_messages(["Hi", "Hello!", "How are you?"])[-1]
    {'role': 'user', 'content': 'How are you?'}
    """
    if isinstance(context, str):
        context = [context]
    messages = []
    for i, turn in enumerate(context):
        if isinstance(turn, str):
            messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": turn})
        else:
            messages.append(turn)
    messages = generation.check_messages(messages)
    if system_prompt and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


class ConversationModel:
    """A conversational model you can chat with, ask for questions, and fine-tune.

    >>> m = ConversationModel.from_pretrained("bundled")                      # doctest: +SKIP
    >>> m.ask(["I just came back from Norway."])                             # doctest: +SKIP
    ['What did you enjoy most about Norway?', ...]
    """

    def __init__(self, lm: LoadedModel, system_prompt: str | None = None):
        self.lm = lm
        self.system_prompt = system_prompt if system_prompt is not None else ChatSettings().system_prompt

    @classmethod
    def from_pretrained(cls, name: str = "bundled", adapter: str | None = None, quantize: str = "auto",
                        dtype: str = "auto", trust_remote_code: bool = False, **kwargs) -> "ConversationModel":
        """Load ``"bundled"``, a Hub id or a local folder, optionally with a LoRA adapter.

        >>> ConversationModel.from_pretrained("bundled", adapter="./my-adapter")   # doctest: +SKIP
        """
        spec = ModelSpec(name=str(name), adapter=str(adapter) if adapter else None, quantize=quantize, dtype=dtype,
                         trust_remote_code=trust_remote_code)
        return cls(get_model(spec), **kwargs)

    @property
    def spec(self) -> ModelSpec:
        return self.lm.spec

    def generate(self, context: Context, num_responses: int = 1, **sampling) -> GenerationOutput:
        """Reply to a conversation. ``sampling`` takes Sampling's fields (temperature=0 is greedy).

        >>> m.generate(context=["Hello", "Hi!", "What's new?"], temperature=0).responses[0]   # doctest: +SKIP
        """
        messages = to_messages(context, self.system_prompt)
        settings = self._sampling(sampling)
        replies = generation.generate_batch(self.lm, [messages] * num_responses, settings)
        return GenerationOutput(responses=replies, context=messages)

    def stream(self, context: Context, **sampling) -> Iterator[str]:
        """Yield the reply piece by piece.

        >>> for piece in m.stream(["Tell me a story"]): print(piece, end="")   # doctest: +SKIP
        """
        yield from generation.stream(self.lm, to_messages(context, self.system_prompt), self._sampling(sampling))

    def _sampling(self, given: dict) -> Sampling:
        """``given`` over the model's own defaults (the app's: the bundled model answers at 0.2, no
        repetition penalty; the general 0.7 and 1.1 were used here)."""
        return replace(model_sampling(self.spec.name), **given)  # (a mistyped field still raises)

    def ask(self, context: Context, n: int = 3) -> list[str]:
        """The curious follow-up questions the assistant would ask next.

        >>> m.ask(["I started learning the piano."])                          # doctest: +SKIP
        """
        return [q.text for q in chat.follow_up_questions(self.lm, to_messages(context), n=n)]

    def questions(self, passage: str, n: int = 5, **kwargs) -> list[str]:
        """Questions about a passage, filtered and ranked (see convo.questions).

        >>> m.questions("The Eiffel Tower was finished in 1889 ...", n=3)       # doctest: +SKIP
        """
        from .questions import generate_questions

        return [q.text for q in generate_questions(passage, n, model=self.lm, **kwargs)]

    def fit(self, train, valid=None, *, task: str = "chat", output_dir: str | Path | None = None,
            lora: LoraSettings | None = None, **train_settings) -> "ConversationModel":
        """Train a LoRA adapter on conversations (or any file the Fine-tune tab accepts); this model
        becomes the adapted one (and is returned, so calls chain). ``train``/``valid``: iterables of
        conversations (lists of strings or of message dicts), or a path. Loss falls on assistant
        turns only. ``train_settings`` takes convo.finetune.TrainSettings fields (max_steps, ...).

        >>> m.fit([["Hi", "Hello! What brings you here?"]] * 20, max_steps=10).save_pretrained("out")  # doctest: +SKIP
        """
        from . import finetune

        train_examples, valid_examples = _examples(train, task), _examples(valid, task) if valid is not None else None
        base = self.lm.spec
        settings = finetune.TrainSettings(task=task, lora=lora or LoraSettings(), **train_settings)
        result = finetune.train_adapter(ModelSpec(base.name, quantize=base.quantize, dtype=base.dtype,
                                                  device=base.device), train_examples, valid_examples, settings,
                                        output_dir or finetune.default_output_dir(base.name))
        if result.output_dir is None:
            raise RuntimeError(f"Training ended without an adapter ({result.status}).")
        self.lm = get_model(ModelSpec(base.name, adapter=str(result.output_dir), quantize=base.quantize,
                                      dtype=base.dtype, device=base.device))
        self.train_result = result
        return self

    def save_pretrained(self, folder: str | Path) -> Path:
        """Save the adapter (peft format + card), loadable with ``from_pretrained(base, adapter=folder)``."""
        import shutil

        if not self.spec.adapter:
            raise ValueError("This model has no adapter to save: call fit() first.")
        folder = Path(folder)
        if Path(self.spec.adapter).resolve() != folder.resolve():
            shutil.copytree(self.spec.adapter, folder, dirs_exist_ok=True)
        return folder

    def push_to_hub(self, repo_id: str, token: str | None = None, private: bool = False) -> str:
        """Push the adapter files and card to the Hub; ``token`` defaults to ``$HF_TOKEN``."""
        from . import hub

        if not self.spec.adapter:
            raise ValueError("This model has no adapter to push: call fit() first.")
        token = hub.resolve_token(token)
        if not token:
            raise hub.HubError(hub.SIGN_IN_HELP)
        return hub.push_adapter(self.spec.adapter, repo_id, token=token, private=private)

    def __repr__(self) -> str:
        return f"ConversationModel({self.spec.label!r}, device={self.lm.device!r})"


def _examples(data, task: str) -> list[list[dict]]:
    """Conversations from an iterable, or training examples from a data file path."""
    if isinstance(data, (str, Path)):
        from .data import load_examples
        from .hub_data import data_file_or_dataset

        # a file on this machine, or a Hub dataset's file (as a model's Hub id): no upload caps
        examples, _report = load_examples(Path(data_file_or_dataset(str(data))), task, max_bytes=None)
        return examples
    return [to_messages(conversation) for conversation in data]
