"""Each setting's default is declared once, in a config dataclass; the tabs and the CLIs show that value.

The tabs are built (the real Blocks of app.py) and their components' values read; the CLIs' ``--help``
is run in a subprocess and its defaults read.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from convo import synth
from convo.finetune import TrainSettings
from convo.questions import DEFAULT_N, QuestionSettings
from convo.settings import QUANTIZE_CHOICES, ChatSettings, LoraSettings, ModelSpec, default_model_name

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def components():
    """label or elem_id -> component of the app's Blocks (labels repeat across tabs: first one kept per tab key)."""
    from convo.ui import build_app

    demo = build_app()
    found: dict[str, object] = {}
    for block in demo.blocks.values():
        for key in (getattr(block, "elem_id", None), getattr(block, "label", None)):
            if key:
                found.setdefault(str(key), []).append(block)
    return found


def value(components, key: str, index: int = 0):
    return components[key][index].value


def test_synth_tab_shows_the_job_and_sampling_defaults(components):
    persona, keyword, sampling = synth.PersonaJob, synth.KeywordJob, synth.SynthSampling()
    assert value(components, "synth-max-attempts") == persona.max_attempts  # the default mode is persona
    assert value(components, "Turns (exchanges) per conversation") == persona.turns
    assert value(components, "Conversations per seed and persona") == persona.samples
    assert value(components, "Restyled message max characters (0 = no limit)") == persona.restyle_max_chars
    assert value(components, "Conversations per word") == keyword.n_per_word
    assert value(components, "Exchanges per conversation (turns strategy)") == keyword.turns
    assert value(components, "First speaker (user)") == keyword.roles[0]
    assert value(components, "Second speaker (assistant)") == keyword.roles[1]
    assert value(components, "Temperature (0 = greedy)", 1) == sampling.temperature  # [0] is the Chat tab's
    assert value(components, "synth-batch-size") == sampling.batch_size
    assert value(components, "Assistant system prompt") == persona.assistant_prompt


def test_synth_mode_switch_keeps_each_modes_attempts():
    from convo.ui import synth as ui

    assert ui.switch_mode(synth.KEYWORD, synth.PersonaJob.max_attempts)[2] == synth.KeywordJob.max_attempts
    assert ui.switch_mode(synth.PERSONA, synth.KeywordJob.max_attempts)[2] == synth.PersonaJob.max_attempts
    assert ui.switch_mode(synth.KEYWORD, 7)[2] == 7  # the user's own number stays
    assert ui.job_from(ui.FormValues(mode=synth.KEYWORD)).max_attempts == synth.KeywordJob.max_attempts
    assert ui.job_from(ui.FormValues(personas=ui.DEFAULT_PERSONA_ROWS)).max_attempts == synth.PersonaJob.max_attempts


def test_finetune_tab_shows_the_training_defaults(components):
    d, lora = TrainSettings(), LoraSettings()
    assert value(components, "ft-epochs") == d.epochs
    assert value(components, "ft-batch-size") == d.batch_size
    assert value(components, "ft-lr") == d.learning_rate
    assert value(components, "ft-max-length") == d.max_length
    assert value(components, "ft-eval-every") == d.eval_every
    assert value(components, "ft-save-every") == d.save_every
    assert value(components, "ft-patience") == d.early_stopping_patience
    assert value(components, "Gradient accumulation") == d.grad_accum
    assert value(components, "Validation share (without a validation file)") == d.val_fraction
    assert value(components, "LoRA rank r") == lora.r
    assert value(components, "LoRA alpha") == lora.alpha
    assert value(components, "LoRA dropout") == lora.dropout
    assert value(components, "ft-qlora") == "auto" and d.qlora is None


def test_chat_questions_and_model_bar_show_their_defaults(components):
    assert value(components, "curious") == ChatSettings.curious
    assert value(components, "interviewer") == ChatSettings.interviewer
    assert value(components, "system-prompt") == ChatSettings.system_prompt
    assert value(components, "Number of questions") == DEFAULT_N
    assert value(components, "Open questions only (no yes/no)") == QuestionSettings.open_only
    assert value(components, "Prompt style") == QuestionSettings.style
    quantize = components["Quantization"][0]
    assert quantize.value == ModelSpec.quantize and [c[1] for c in quantize.choices] == list(QUANTIZE_CHOICES)
    assert value(components, "Model") == default_model_name()


def _help(*module: str) -> str:
    done = subprocess.run([sys.executable, "-m", *module, "--help"], capture_output=True, text=True, cwd=ROOT,
                          env={"COLUMNS": "400", "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split())


def test_cli_help_shows_the_config_defaults():
    synth_help = _help("convo", "synth")
    sampling, persona, keyword = synth.SynthSampling(), synth.PersonaJob, synth.KeywordJob
    assert f"0 = greedy (default: {sampling.temperature})" in synth_help
    assert f"conversations generated together (default: {sampling.batch_size})" in synth_help
    assert f"(default: {persona.max_attempts} persona, {keyword.max_attempts} keyword)" in synth_help
    assert f"(default: {persona.turns} persona, {keyword.turns} keyword)" in synth_help
    train_help = _help("training.finetune")
    d, lora = TrainSettings(), LoraSettings()
    for flag, default in [("--num_epochs", f"{d.epochs:g}"), ("--batch_size", d.batch_size),
                          ("--learning_rate", f"{d.learning_rate:g}"), ("--max_length", d.max_length),
                          ("--seed", d.seed), ("--lora_r", lora.r), ("--lora_alpha", lora.alpha),
                          ("--eval_steps", d.eval_every), ("--save_steps", d.save_every)]:
        shown = re.search(rf"{flag} \S+ [^-]*?\(default {re.escape(str(default))}[);]", train_help)
        assert shown, (flag, default)
    for flag in ("--train_data", "--val_data", "--model_name", "--num_epochs", "--batch_size", "--learning_rate",
                 "--output_dir"):
        assert flag in train_help
    chat_help = _help("convo", "chat")
    from convo.settings import Sampling

    assert f"--max-new-tokens MAX_NEW_TOKENS (default: {Sampling.max_new_tokens})" in chat_help
