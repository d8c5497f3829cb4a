"""convo: curious conversational language models — chat that asks good questions, question
generation, LoRA/QLoRA fine-tuning and synthetic conversations, as a package and a Gradio app.

>>> from convo import ConversationModel                     # doctest: +SKIP
>>> ConversationModel.from_pretrained("bundled").generate(["Hello"]).responses[0]  # doctest: +SKIP
"""
from .api import ConversationModel, GenerationOutput, to_messages
from .engine.generation import Stop, generate, generate_batch, stream
from .engine import ModelLoadError, get_model
from .settings import BUNDLED, ChatSettings, LoraSettings, ModelSpec, Sampling

__version__ = "0.1.0"

__all__ = [
    "BUNDLED",
    "ChatSettings",
    "ConversationModel",
    "GenerationOutput",
    "LoraSettings",
    "ModelLoadError",
    "ModelSpec",
    "Sampling",
    "Stop",
    "generate",
    "generate_batch",
    "get_model",
    "stream",
    "to_messages",
]
