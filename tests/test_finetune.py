"""Tests for convo.finetune, the training/ CLIs and the Fine-tune tab's handlers, on tiny fp32 models.

Run: ``python -m pytest tests/test_finetune.py -q`` (the slow QLoRA run on the bundled model: ``-m slow``).
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from pathlib import Path

import pytest

from convo import finetune as ft
from convo import jobs
from convo.cli import train as train_cli
from convo.data import load_data, load_examples
from convo.engine import adapter_base, get_model, load_model
from convo.settings import LoraSettings, ModelSpec

try:
    from hub_server import serve_fake_hub
except ImportError:  # pragma: no cover
    from tests.hub_server import serve_fake_hub

DATA = Path(__file__).parent / "data"
COQA = DATA / "good" / "coqa_simple.json"
CHAT = DATA / "finetune" / "chat_multiturn.jsonl"
TOKEN = "hf_finetune_secret_token"

pytestmark = pytest.mark.timeout(300)


def quick(**changes) -> ft.TrainSettings:
    """Settings for a few fast steps on a tiny model."""
    # whole-batch passes without recomputation: tiny models have no memory to save, and CI has no time to spend
    base = dict(max_steps=6, batch_size=4, micro_batch_size=4, gradient_checkpointing=False, learning_rate=1e-2,
                eval_every=3, save_every=3, eval_generations=2, lora=LoraSettings(r=8, alpha=16, dropout=0.0))
    return ft.TrainSettings(**{**base, **changes})


def tiny_spec(folder: str, **kwargs) -> ModelSpec:
    return ModelSpec(folder, dtype="float32", device="cpu", **kwargs)


@pytest.fixture(scope="module")
def tiny_lm(tiny_causal):
    return load_model(tiny_spec(tiny_causal))


@pytest.fixture(scope="module")
def trained(tiny_causal, tmp_path_factory):
    """One short LoRA run on the CoQA sample, shared by the tests that inspect its results."""
    folder = tmp_path_factory.mktemp("trained")
    examples, _ = load_examples(COQA, "qg")
    records = []
    result = ft.train_adapter(tiny_spec(tiny_causal), examples, examples[:4], quick(task="qg"), folder / "adapter",
                              on_log=records.append)
    return result, records, folder


# ----------------------------------------------------------------------------- settings and converters


def test_settings_reject_bad_values_with_the_field_named():
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, 1024\], got 0"):
        ft.TrainSettings(batch_size=0)
    with pytest.raises(ValueError, match=r"save_every \(50\) must be a multiple of eval_every \(20\)"):
        ft.TrainSettings(eval_every=20, save_every=50)
    ft.TrainSettings(eval_every=20, save_every=50, early_stopping_patience=0)  # no early stopping: any steps
    with pytest.raises(ValueError, match="task must be one of"):
        ft.TrainSettings(task="summarise")
    with pytest.raises(ValueError, match="push_to_hub must be 'user/repo'"):
        ft.FinetuneConfig(train_data="a.json", output_dir="out", push_to_hub="norepo")


def test_settings_round_trip_through_dict():
    settings = ft.TrainSettings(max_steps=7, qlora=True, task="cqg", lora=LoraSettings(r=4, target_modules="q_proj,v_proj"))
    assert ft.TrainSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert settings.use_qlora("cpu") is True
    assert ft.TrainSettings().use_qlora("cuda:0") is True and ft.TrainSettings().use_qlora("cpu") is False


def test_to_lora_config_is_a_pure_converter():
    config = ft.to_lora_config(LoraSettings(r=4, alpha=8, dropout=0.1, target_modules="q_proj, v_proj"))
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 8, 0.1)
    assert set(config.target_modules) == {"q_proj", "v_proj"}
    assert config.task_type == "CAUSAL_LM"
    assert ft.to_lora_config(LoraSettings(), "SEQ_2_SEQ_LM").target_modules == "all-linear"


def test_cli_args_reproduce_the_config():
    settings = ft.TrainSettings(max_steps=9, batch_size=2, learning_rate=3e-4, qlora=False, task="qa",
                                early_stopping_patience=0, eval_every=7, save_every=5, group_by_length=False,
                                eval_examples=0, micro_batch_size=1, lora=LoraSettings(r=4, dropout=0.0))
    config = ft.FinetuneConfig(train_data="/d/train.json", val_data="/d/val.json", output_dir="/o/a",
                               model_name="org/model", settings=settings, dtype="float32", private=False)
    args = train_cli.build_parser().parse_args(jobs.cli_args(config))
    assert train_cli.config_from_args(args) == config


# ----------------------------------------------------------------------------- labels


def test_labels_mask_prompt_and_every_assistant_turn_is_a_target(tiny_lm):
    conversation = [{"role": "system", "content": "Be curious."},
                    {"role": "user", "content": "I bake bread."},
                    {"role": "assistant", "content": "What kind of bread?"},
                    {"role": "user", "content": "Sourdough."},
                    {"role": "assistant", "content": "How old is your starter?"}]
    encoded = ft.encode_example(tiny_lm, conversation, 512)
    tok = tiny_lm.tokenizer
    targets = [t for t in encoded["labels"] if t != -100]
    assert tok.decode(targets) == "What kind of bread?<|im_end|>How old is your starter?<|im_end|>"
    prompt = [t for t, label in zip(encoded["input_ids"], encoded["labels"]) if label == -100]
    assert "I bake bread." in tok.decode(prompt) and "Be curious." in tok.decode(prompt)
    rendered = tok.apply_chat_template(conversation, tokenize=False)
    assert encoded["input_ids"] == tok(rendered, add_special_tokens=False)["input_ids"]


def test_a_qg_example_trains_on_the_question_after_its_fewshot_prompt(tiny_lm):
    """The qg task's few-shot example: the worked examples and the text are context, the question
    (with the end marker that stops generation) is the only target, tokenized as the prompt is."""
    from convo.data import qg_fewshot_prompt, render

    example = qg_fewshot_prompt("Bees dance to show where flowers are.") + [
        {"role": "assistant", "content": "Why do bees dance?"}]
    encoded = ft.encode_example(tiny_lm, example, 512)
    tok = tiny_lm.tokenizer
    assert tok.decode([t for t in encoded["labels"] if t != -100]).strip() == "Why do bees dance?<|im_end|>"
    prompt_ids = tok(render(tiny_lm, example[:1]), add_special_tokens=False)["input_ids"]
    assert encoded["input_ids"][:len(prompt_ids)] == prompt_ids  # the Questions tab's prompt, token for token
    assert all(label == -100 for label in encoded["labels"][:len(prompt_ids)])


def test_padding_is_masked_by_position_even_when_pad_is_eos(tiny_lm):
    import torch

    short = ft.encode_example(tiny_lm, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello?"}], 512)
    long = ft.encode_example(tiny_lm, [{"role": "user", "content": "Tell me about the river and the old mill"},
                                       {"role": "assistant", "content": "Why do you ask about the mill?"}], 512)
    eos = tiny_lm.tokenizer.eos_token_id
    batch = ft.pad_collator(tiny_lm.tokenizer, pad_id=eos)([short, long])
    n = len(short["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"][0, n:].sum() == 0 and batch["attention_mask"][0, :n].all()
    assert (batch["labels"][0, n:] == -100).all()
    assert (batch["input_ids"][0, n:] == eos).all()
    side, pad = tiny_lm.tokenizer.padding_side, tiny_lm.tokenizer.pad_token_id
    tiny_lm.tokenizer.padding_side = "left"  # as for batched generation: training still pads on the right
    try:
        again = ft.pad_collator(tiny_lm.tokenizer, pad_id=eos)([short, long])
        assert all(torch.equal(again[key], batch[key]) for key in batch)
        assert (tiny_lm.tokenizer.padding_side, tiny_lm.tokenizer.pad_token_id) == ("left", pad)  # shared one untouched
    finally:
        tiny_lm.tokenizer.padding_side = side
    assert batch["labels"][0, :n].tolist() == short["labels"]


def test_over_long_examples_keep_their_target(tiny_lm):
    passage = "The river flows past the old mill. " * 40
    example = [{"role": "user", "content": passage}, {"role": "assistant", "content": "Where does the river flow?"}]
    encoded = ft.encode_example(tiny_lm, example, 32)
    assert len(encoded["input_ids"]) == 32
    targets = [t for t in encoded["labels"] if t != -100]
    assert tiny_lm.tokenizer.decode(targets) == "Where does the river flow?<|im_end|>"


def test_spans_without_a_chat_template_and_with_an_inconsistent_one(tiny_causal):
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there?"},
                    {"role": "user", "content": "Yes"}, {"role": "assistant", "content": "Why yes?"}]
    lm = load_model(tiny_spec(tiny_causal))
    lm.tokenizer.chat_template = None  # plain causal LM: turns joined by EOS
    text, spans = ft.assistant_spans(lm, conversation)
    assert [text[a:b] for a, b in spans] == ["Hello there?<|endoftext|>", "Why yes?<|endoftext|>"]
    # A template that writes the number of messages up front renders no prefix of the full text.
    lm.tokenizer.chat_template = (
        "{{ messages|length }} turns\n{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    text, spans = ft.assistant_spans(lm, conversation)
    assert text.startswith("4 turns")
    assert [text[a:b] for a, b in spans] == ["Hello there?<|im_end|>", "Why yes?<|im_end|>"]


# ----------------------------------------------------------------------------- training


def test_lora_weights_change_and_base_weights_do_not(tiny_causal, tiny_lm):
    import torch

    lm = load_model(tiny_spec(tiny_causal))
    model = ft.attach_lora(lm, quick())
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    examples, _ = load_examples(COQA, "qg")
    items, _ = ft.encode_examples(lm, examples[:4], 256)
    batch = ft.pad_collator(lm.tokenizer)(items)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(2):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = dict(model.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name].detach())}
    assert changed and changed <= set(trainable)
    assert any("lora_B" in name for name in changed)


def test_attaching_lora_prints_no_deprecation_into_the_job_log(tiny_causal):
    """Every job's log began with transformers' FutureWarning that ``is_gradient_checkpointing`` is
    deprecated (peft asks for it by that name when the adapter is attached)."""
    import warnings

    lm = load_model(tiny_spec(tiny_causal))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ft.attach_lora(lm, quick(gradient_checkpointing=True))
    assert [str(w.message) for w in caught if "gradient_checkpointing" in str(w.message)] == []
    assert model.base_model.model.is_activation_checkpointing


def test_targets_only_loss_and_gradients_equal_the_full_logits_loss(tiny_causal):
    """The loss computed from logits at target positions only is transformers' own loss, and so
    are its gradients, with and without a token count from gradient accumulation."""
    import torch

    lm = load_model(tiny_spec(tiny_causal))
    model = ft.attach_lora(lm, quick(gradient_checkpointing=None, lora=LoraSettings(r=4, alpha=8, dropout=0.0)))
    assert ft.supports_targets_only_loss(model)
    examples, _ = load_examples(COQA, "qg")
    items, _ = ft.encode_examples(lm, examples[:5], 256)
    batch = ft.pad_collator(lm.tokenizer)(items)
    mask = ft.next_token_target_mask(batch["labels"])
    assert 0 < int(mask.sum()) < mask.numel() // 3  # question targets are a small part of each row
    model.train()
    for count in (None, torch.tensor(57)):
        extra = {} if count is None else {"num_items_in_batch": count}
        model.zero_grad()
        full = model(**batch, **extra).loss
        full.backward()
        full_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        model.zero_grad()
        new, outputs = ft.targets_only_loss(model, batch, count)
        new.backward()
        assert outputs.logits.shape == (int(mask.sum()), lm.model.config.vocab_size)
        assert torch.allclose(new, full, rtol=1e-5, atol=1e-6), (new, full)
        for name, param in model.named_parameters():
            if param.requires_grad:
                assert torch.allclose(param.grad, full_grads[name], rtol=1e-4, atol=1e-7), name


def test_micro_batches_make_the_same_step_as_the_whole_batch(tiny_causal, tmp_path):
    """A batch of 4 run as 4 passes of 1 (CPU's default) and as one pass of 4 updates the LoRA
    weights alike: the loss is normalised over the whole batch either way."""
    import torch
    from safetensors.torch import load_file

    examples, _ = load_examples(COQA, "qg")
    weights, losses = [], []
    for micro in (1, 4):
        settings = quick(max_steps=2, batch_size=4, micro_batch_size=micro, eval_generations=0, group_by_length=False,
                         warmup_ratio=0.0, early_stopping_patience=0, gradient_checkpointing=None)  # the defaults
        result = ft.train_adapter(tiny_spec(tiny_causal), examples, [], settings, tmp_path / f"micro-{micro}")
        weights.append(load_file(str(Path(result.output_dir) / "adapter_model.safetensors")))
        losses.append([loss for _, loss in result.train_losses])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)  # Adam hides a scaled gradient; the loss does not
    assert ft.TrainSettings(batch_size=8).micro_batch("cpu") == 1
    assert ft.TrainSettings(batch_size=6, micro_batch_size=4).micro_batch("cpu") == 3
    assert ft.TrainSettings(batch_size=8).micro_batch("cuda:0") == 8
    assert weights[0].keys() == weights[1].keys()
    assert any(w.abs().sum() > 0 for k, w in weights[0].items() if "lora_B" in k)  # it trained
    for key in weights[0]:
        assert torch.allclose(weights[0][key], weights[1][key], rtol=1e-3, atol=1e-5), key


def test_seq2seq_keeps_its_own_loss(tiny_seq2seq):
    lm = load_model(tiny_spec(tiny_seq2seq))
    assert not ft.supports_targets_only_loss(ft.attach_lora(lm, quick()))


def test_validation_loss_runs_on_a_capped_fixed_sample(tiny_causal, tmp_path):
    examples, _ = load_examples(COQA, "qg")
    valid = examples * 4
    settings = quick(max_steps=2, eval_every=2, save_every=2, eval_generations=0, eval_examples=3)
    sample = ft.eval_sample(valid, settings)
    assert len(sample) == 3 and sample == ft.eval_sample(valid, settings)
    assert len(ft.eval_sample(valid, replace(settings, eval_examples=0))) == len(valid)
    result = ft.train_adapter(tiny_spec(tiny_causal), examples, valid, settings, tmp_path / "adapter")
    assert result.metrics["eval_loss"] > 0
    meta = ft.read_metadata(result.output_dir)
    assert meta["hyperparameters"]["validation_examples"] == 3 and meta["hyperparameters"]["eval_examples"] == 3
    with pytest.raises(ValueError, match="eval_examples"):
        ft.TrainSettings(eval_examples=-1)


def test_the_eta_counts_validation_passes_apart_from_steps():
    """A run of 100 steps, validated before step 1 (60 s) and every 10 steps: after the first 27 s
    step the ETA is 99 steps of 27 s and 10 passes of 60 s, not 99 times the 87 s since the start."""
    from types import SimpleNamespace

    from transformers import IntervalStrategy

    from convo.finetune.train import _ProgressCallback

    now = [1000.0]
    records = []
    callback = _ProgressCallback.make(records.append, None, clock=lambda: now[0])
    args = SimpleNamespace(eval_strategy=IntervalStrategy.STEPS, eval_steps=10)
    state = SimpleNamespace(global_step=0, max_steps=100, epoch=0.0)
    loader = [0, 0]

    def validate(seconds):
        for batch in range(2):
            callback.on_prediction_step(args, state, None, eval_dataloader=loader)
            now[0] += seconds / 2
        callback.on_log(args, state, None, logs={"eval_loss": 2.0})
        callback.on_evaluate(args, state, None)

    def step(seconds):
        now[0] += seconds
        state.global_step += 1
        callback.on_step_end(args, state, None)
        callback.on_log(args, state, None, logs={"loss": 1.5})

    callback.on_train_begin(args, state, None)
    validate(60)
    step(27)
    assert records[-1]["eta_s"] == 99 * 27 + 10 * 60
    for _ in range(9):
        step(27)
    validate(60)  # step 10's loss is logged before its pass (10 passes to come), its eval_loss at the pass's end
    logged = [(r["step"], r["eta_s"]) for r in records if "phase" not in r]  # not the validation's progress
    assert logged[-2:] == [(10, 90 * 27 + 10 * 60), (10, 90 * 27 + 9 * 60)]
    step(33)  # steps now average 303 / 11 s
    assert records[-1]["eta_s"] == pytest.approx(89 * 303 / 11 + 9 * 60, abs=0.1)
    state.global_step, state.max_steps = 99, 100
    step(27)  # the last step's loss: its pass is still to come
    assert records[-1]["step"] == 100 and records[-1]["eta_s"] == 60
    assert ft.evaluations_left(95, 100, 10) == 1 and ft.evaluations_left(95, 97, 10) == 1
    assert ft.evaluations_left(100, 100, 10) == 0 and ft.evaluations_left(3, 100, 0) == 0


def test_training_lowers_the_loss_and_saves_a_complete_adapter(trained, tiny_causal):
    result, records, _ = trained
    losses = [loss for _, loss in result.train_losses]
    assert result.status == "finished" and result.steps == 6 and len(losses) == 6
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.05, losses
    # validated before the first step (the base model: LoRA starts as a no-op), then every 3 steps
    assert [step for step, _ in result.eval_losses] == [0, 3, 6]
    assert result.metrics["base_eval_loss"] == round(result.eval_losses[0][1], 4) > result.metrics["eval_loss"]
    steps = [r for r in records if "phase" not in r]  # phase records (validating...) are progress, not history
    assert steps == result.history and steps[-1]["eta_s"] == 0.0
    folder = Path(result.output_dir)
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "convo_adapter.json",
            "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in folder.iterdir()}
    meta = json.loads((folder / "convo_adapter.json").read_text())
    assert meta["base_model"] == tiny_causal and meta["task"] == "qg" and meta["prompt_style"] == "fewshot"
    assert meta["hyperparameters"]["max_steps"] == 6 and meta["hyperparameters"]["lora_r"] == 8
    assert meta["hyperparameters"]["quantization"] == "none"
    for key in ("eval_loss", "base_eval_loss", "train_loss", "rouge_l", "bleu", "base_rouge_l", "base_bleu"):
        assert isinstance(meta["metrics"][key], float), key
    assert len(meta["samples"]) == 2 and set(meta["samples"][0]) == {"prompt", "reference", "base", "adapter"}
    card = (folder / "README.md").read_text()
    assert "library_name: peft" in card and meta["train_sha256"] in card
    assert "## Prompt" in card and "Text: <the sentence to ask about>\nQuestion:" in card  # not the chat template
    assert any(meta["samples"][0]["prompt"] in p.context for p in load_data(COQA)[0])  # the span asked about
    assert adapter_base(folder) == tiny_causal


def test_a_run_reports_what_it_does_before_its_first_step(trained, tiny_causal):
    """Loading, then encoding (from 0 to all the examples), then the step count as the trainer
    begins: a job on a 108k-question file said nothing for a minute while it encoded."""
    result, records, _ = trained
    phases = [r["phase"] for r in records if "phase" in r]
    first_loss = next(i for i, r in enumerate(records) if "loss" in r or "eval_loss" in r)
    assert records[0] == {"phase": "loading", "model": tiny_causal}
    encoding = [r for r in records if r.get("phase") == "encoding"]
    n_train = len(load_examples(COQA, "qg")[0])
    assert [(r["split"], r["done"], r["total"]) for r in encoding] == [("training", 0, n_train), ("training", n_train, n_train),
                                                                      ("validation", 0, 4), ("validation", 4, 4)]
    begun = phases.index("training")
    assert phases[:begun] == ["loading"] + ["encoding"] * 4
    assert records[begun] == {"phase": "training", "step": 0, "max_steps": 6} and begun < first_loss


def test_cancel_while_encoding_stops_between_examples(tiny_causal, tmp_path, monkeypatch):
    """A stop asked for while the examples encode ends the run there (a large file encodes for a
    minute), before any model is wrapped or checkpoint written."""
    from convo.finetune import encode

    monkeypatch.setattr(encode, "PROGRESS_EVERY_S", 0.0)  # a progress tick (and a stop check) after every example
    examples, _ = load_examples(COQA, "qg")
    records = []
    result = ft.train_adapter(tiny_spec(tiny_causal), examples, [], quick(), tmp_path / "a", on_log=records.append,
                              should_stop=lambda: any(r.get("done") == 3 for r in records))
    assert result.status == "cancelled" and result.steps == 0 and result.checkpoint is None
    assert [r["done"] for r in records if r.get("phase") == "encoding"] == [0, 1, 2, 3]
    assert not any(r.get("phase") == "training" for r in records)
    assert not (tmp_path / "a").exists() and not list(tmp_path.glob("a.checkpoints/checkpoint-*"))


def test_saved_adapter_holds_only_trained_lora_weights(trained):
    from safetensors.torch import load_file

    weights = load_file(Path(trained[0].output_dir) / "adapter_model.safetensors")
    assert weights and all("lora_" in name for name in weights)
    assert any(t.abs().sum() > 0 for name, t in weights.items() if "lora_B" in name)  # B starts at zero
    # the weights can be read by whoever can read the adapter's other files (safetensors wrote them 0600)
    folder = Path(trained[0].output_dir)
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir() if p.is_file()}
    assert modes["adapter_model.safetensors"] == modes["adapter_config.json"] == modes["README.md"], modes


def test_adapter_reloads_with_get_model_and_generates(trained, tiny_causal):
    import torch
    from convo.engine.generation import generate
    from convo.settings import GREEDY

    adapted = get_model(tiny_spec(tiny_causal, adapter=trained[0].output_dir))
    base = get_model(tiny_spec(tiny_causal))
    name = next(n for n, _ in base.model.named_parameters() if n.endswith("q_proj.weight"))
    merged = dict(adapted.model.named_parameters())[name]
    assert not torch.equal(merged, dict(base.model.named_parameters())[name])  # the adapter was merged in
    text = generate(adapted, [{"role": "user", "content": "Passage:\nThe river flows past the mill."}],
                    replace(GREEDY, max_new_tokens=8))
    assert isinstance(text, str) and text.strip()


def test_qlora_trains_on_a_4bit_base_on_cpu(tiny_causal, tmp_path):
    examples, _ = load_examples(COQA, "qg")
    result = ft.train_adapter(tiny_spec(tiny_causal), examples, [], quick(max_steps=3, qlora=True, eval_generations=0),
                              tmp_path / "qlora")
    assert result.status == "finished" and result.steps == 3
    assert all(loss == loss for _, loss in result.train_losses)  # no NaN
    meta = ft.read_metadata(result.output_dir)
    assert meta["hyperparameters"]["quantization"] == "4bit"
    lm = load_model(tiny_spec(tiny_causal, adapter=result.output_dir, quantize="4bit"))
    assert lm.quantized == "4bit" and type(lm.model).__name__.startswith("Peft")  # 4-bit bases stay unmerged


def test_chat_task_trains_on_multi_turn_conversations(tiny_causal, tmp_path):
    config = ft.FinetuneConfig(train_data=str(CHAT), output_dir=str(tmp_path / "chat"), model_name=tiny_causal,
                               dtype="float32", device="cpu", settings=quick(max_steps=2, eval_generations=1))
    result = ft.run_training(config)
    meta = ft.read_metadata(result.output_dir)
    assert meta["task"] == "chat" and meta["counts"]["format"] == "chat-jsonl"
    assert meta["counts"]["train_examples"] + meta["counts"]["validation_examples"] == 6


def test_seq2seq_base_trains_on_the_last_turn_and_reloads(tiny_seq2seq, tmp_path):
    from convo.engine.generation import generate

    examples, _ = load_examples(COQA, "qa")
    lm = load_model(tiny_spec(tiny_seq2seq))
    encoded = ft.encode_example(lm, examples[0], 512)
    assert lm.tokenizer.decode(encoded["labels"], skip_special_tokens=True) == examples[0][-1]["content"]
    result = ft.train_adapter(tiny_spec(tiny_seq2seq), examples, examples[:2], quick(max_steps=2, eval_generations=1),
                              tmp_path / "t5")
    assert result.status == "finished" and "eval_loss" in result.metrics
    tuned = load_model(tiny_spec(tiny_seq2seq, adapter=result.output_dir))
    assert isinstance(generate(tuned, examples[0][:-1], ft.eval_sampling("qa")), str)


def test_an_existing_adapter_is_not_replaced_unless_asked(trained, tiny_causal):
    examples, _ = load_examples(COQA, "qg")
    with pytest.raises(ValueError, match="already holds an adapter"):
        ft.train_adapter(tiny_spec(tiny_causal), examples, None, quick(), trained[0].output_dir)


def test_cancel_keeps_a_usable_checkpoint_and_resume_finishes(tiny_causal, tmp_path):
    examples, _ = load_examples(COQA, "qg")
    settings = quick(max_steps=6, eval_generations=0, save_every=4, eval_every=4)
    polls = []  # should_stop is polled once before training, after each validation batch (the base
    # model's pass: one batch of 3), then at the end of every step: say stop at the end of the third step
    result = ft.train_adapter(tiny_spec(tiny_causal), examples, examples[:3], settings, tmp_path / "a",
                              should_stop=lambda: polls.append(1) or len(polls) >= 5)
    assert result.status == "cancelled" and result.output_dir is None and result.steps == 3
    assert Path(result.checkpoint).name == "checkpoint-3"  # saved at the cancel, not just every save_every
    assert not (tmp_path / "a").exists()
    lm = load_model(tiny_spec(tiny_causal, adapter=result.checkpoint))  # the checkpoint is a loadable adapter
    assert lm.model is not None
    resumed = ft.train_adapter(tiny_spec(tiny_causal), examples, examples[:3], settings, tmp_path / "a", resume=True)
    assert resumed.status == "finished" and resumed.steps == 6
    assert [step for step, _ in resumed.train_losses] == [4, 5, 6]
    assert [step for step, _ in resumed.eval_losses] == [4, 6]  # no second base pass on resume
    assert resumed.metrics["base_eval_loss"] > 0  # the first run's, kept in the checkpoint's trainer state
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()


def test_a_cancel_before_the_first_step_stops_without_training(tiny_causal, tmp_path):
    """A cancel that arrives while the model loads stops the run before its first step (no step to wait for)."""
    examples, _ = load_examples(COQA, "qg")
    result = ft.train_adapter(tiny_spec(tiny_causal), examples, None, quick(max_steps=50, eval_generations=0),
                              tmp_path / "a", should_stop=lambda: True)
    assert result.status == "cancelled" and result.steps == 0 and result.checkpoint is None
    assert result.output_dir is None and not (tmp_path / "a").exists()


# ----------------------------------------------------------------------------- metrics


def test_rouge_l_and_bleu_values():
    assert ft.rouge_l("Where did Marta live?", "where did marta live ?") == 1.0
    assert ft.rouge_l("", "anything") == 0.0
    # LCS of [who, helped, her, ?] and [who, helped, marta, this, year, ?] is 3: P=3/4, R=3/6.
    assert ft.rouge_l("Who helped her?", "Who helped Marta this year?") == pytest.approx(0.6)
    assert ft.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    assert ft.bleu(["dogs bark"], ["the cat sat on the mat"]) == 0.0
    partial = ft.bleu(["the cat sat on a mat"], ["the cat sat on the mat"])
    assert 0.3 < partial < 1.0


# ----------------------------------------------------------------------------- CLIs


def run_cli(main, argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_cli_trains_then_evaluate_prints_metrics(tiny_causal, tmp_path, monkeypatch):
    from convo.data import pipeline, validate_file
    from training import evaluate, finetune

    # The caps on one upload to the app do not bind a file named on the command line: the official
    # CoQA training file (49 MB, 108k questions) was refused as "over the 20.0 MB limit" (now 32).
    monkeypatch.setattr(pipeline, "MAX_WORK", 5)
    assert "over the limit of 5 per upload" in validate_file(COQA).error
    output = tmp_path / "adapter"
    code, out, err = run_cli(finetune.main, [
        "--train_data", str(COQA), "--model_name", tiny_causal, "--dtype", "float32", "--output_dir", str(output),
        "--max_steps", "2", "--batch_size", "4", "--learning_rate", "5e-3", "--eval_generations", "0",
        "--save_steps", "2", "--eval_steps", "2"])
    assert code == 0, err
    assert "step 2/2" in out
    summary = json.loads(out[out.index("{"):])
    assert summary["adapter"] == str(output) and "eval_loss" in summary["metrics"]
    assert (tmp_path / "adapter.checkpoints" / "checkpoint-2").is_dir()
    # a finished run trains further from its checkpoints (as the README says they are kept for)
    code, out, err = run_cli(finetune.main, [
        "--train_data", str(COQA), "--model_name", tiny_causal, "--dtype", "float32", "--output_dir", str(output),
        "--max_steps", "4", "--batch_size", "4", "--learning_rate", "5e-3", "--eval_generations", "0",
        "--save_steps", "2", "--eval_steps", "2", "--resume"])
    assert code == 0, err
    assert "step 4/4" in out and "step 1/4" not in out  # from step 2 on, not from the beginning
    assert json.loads(out[out.index("{"):])["metrics"]["steps"] == 4
    code, out, err = run_cli(evaluate.main, ["--adapter", str(output), "--data", str(COQA), "--max_examples", "3",
                                            "--dtype", "float32", "--compare_base"])
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["task"] == "qg" and metrics["examples"] == 3 and metrics["base_model"] == tiny_causal
    for key in ("eval_loss", "rouge_l", "bleu", "base_eval_loss", "base_rouge_l", "base_bleu"):
        assert isinstance(metrics[key], float), key
    assert metrics["eval_loss"] != metrics["base_eval_loss"]


def test_cli_trains_on_a_hub_dataset_named_by_its_id(tiny_causal, tmp_path, monkeypatch):
    """``--train_data stanfordnlp/coqa`` as ``--model_name`` takes a Hub id: the train split's file is
    downloaded, and its validation split's without ``--val_data``; a name on neither says both."""
    from training import finetune

    hub = serve_fake_hub(monkeypatch, tmp_path, {TOKEN: "alice"})
    parquet = (DATA / "good" / "coqa_hf.parquet").read_bytes()
    hub.add_repo("stanfordnlp/coqa", {"data/train-00000-of-00001.parquet": parquet,
                                      "data/validation-00000-of-00001.parquet": parquet}, repo_type="dataset")
    try:
        output = tmp_path / "adapter"
        code, out, err = run_cli(finetune.main, [
            "--train_data", "stanfordnlp/coqa", "--model_name", tiny_causal, "--dtype", "float32",
            "--output_dir", str(output), "--max_steps", "1", "--batch_size", "2", "--eval_generations", "0",
            "--save_steps", "1", "--eval_steps", "1"])
        assert code == 0, err
        assert re.search(r"fetched from the Hub: \S+/train-00000-of-00001.parquet, \S+/validation-00000-of-00001.parquet",
                         err), err
        meta = ft.read_metadata(output)
        assert meta["train_file"] == "train-00000-of-00001.parquet"
        assert meta["counts"]["train_examples"] == 6 and meta["counts"]["validation_examples"] == 6  # not a split
        code, _, err = run_cli(finetune.main, ["--train_data", "nobody/nothing", "--model_name", tiny_causal,
                                               "--output_dir", str(tmp_path / "other")])
        assert code == 2 and err.strip() == (
            "error: nobody/nothing is not a file here, and on the Hub: Repository nobody/nothing was not found on "
            "the Hub (or it is private and this token cannot read it).")
    finally:
        hub.stop()


def test_cli_trains_on_a_dataset_saved_with_save_to_disk(tiny_causal, tmp_path):
    """``--train_data FOLDER`` that ``DatasetDict.save_to_disk`` wrote trains on its train split, and its
    validation split is the validation data without ``--val_data``; a folder that is no saved dataset is
    a clear error (it was IsADirectoryError's traceback)."""
    from training import finetune

    saved = DATA / "saved"
    output = tmp_path / "adapter"
    code, out, err = run_cli(finetune.main, [
        "--train_data", str(saved / "squad_dict"), "--model_name", tiny_causal, "--dtype", "float32",
        "--output_dir", str(output), "--max_steps", "1", "--batch_size", "2", "--eval_generations", "0",
        "--save_steps", "1", "--eval_steps", "1"])
    assert code == 0, err
    assert f"validation: {saved / 'squad_dict' / 'validation'} (the saved DatasetDict's validation split)" in err
    assert "fetched from the Hub" not in err  # a folder here
    meta = ft.read_metadata(output)
    assert (meta["train_file"], meta["val_file"]) == ("squad_dict", "validation")
    assert (meta["counts"]["format"], meta["counts"]["train_examples"], meta["counts"]["validation_examples"]) == (
        "flat-qa", 3, 2)
    code, _, err = run_cli(finetune.main, ["--train_data", str(saved), "--model_name", tiny_causal,
                                           "--output_dir", str(tmp_path / "other")])
    assert code == 2 and err == ("error: saved: folder is not a data file, nor a dataset saved by datasets' "
                                 "save_to_disk: name a data file or a saved dataset in it (chat/, squad_dict/)\n")


def test_cli_rejects_bad_data_naming_the_fault_and_writes_nothing(tiny_causal, tmp_path):
    from training import finetune

    output = tmp_path / "adapter"
    code, _, err = run_cli(finetune.main, ["--train_data", str(DATA / "bad" / "coqa_empty_data.json"),
                                           "--model_name", tiny_causal, "--output_dir", str(output)])
    assert code == 2
    assert err == 'error: coqa_empty_data.json: file has no records: "data" is empty\n'
    assert not output.exists() and not (tmp_path / "adapter.checkpoints").exists()
    code, _, err = run_cli(finetune.main, ["--train_data", str(COQA), "--output_dir", str(output), "--lora_r", "0"])
    assert code == 2 and "LoRA r must be in [1, 1024], got 0" in err


def test_cli_trains_on_the_good_records_and_names_the_skipped_ones(tiny_causal, tmp_path):
    from training import finetune

    code, _, err = run_cli(finetune.main, ["--train_data", str(DATA / "bad" / "simple_mismatched_counts.json"),
                                           "--model_name", tiny_causal, "--dtype", "float32", "--max_steps", "1",
                                           "--eval_generations", "0", "--output_dir", str(tmp_path / "a")])
    assert code == 0, err
    assert "warning: simple_mismatched_counts.json: [1]: 3 questions but 2 answers" in err
    assert ft.read_metadata(tmp_path / "a")["counts"]["skipped_records"] == 1


def test_convo_train_subcommand_has_the_same_flags():
    import argparse

    parser = argparse.ArgumentParser()
    train_cli.register_cli(parser.add_subparsers())
    args = parser.parse_args(["train", "--train_data", "t.json", "--output_dir", "o", "--qlora", "--task", "cqg",
                              "--num_epochs", "2", "--job_dir", "j"])
    assert args.func is train_cli.cli_main
    config = train_cli.config_from_args(args)
    assert config.settings.qlora is True and config.settings.task == "cqg" and config.settings.epochs == 2.0


# ----------------------------------------------------------------------------- jobs


def _own_process_status(**fields) -> dict:
    return {"pid": os.getpid(), "pid_started": jobs._process_started(os.getpid()), **fields}


def test_queue_runs_one_job_per_slot_in_order(data_dir):
    config = ft.FinetuneConfig(train_data=str(COQA), output_dir=str(data_dir / "a"))
    running, first, second = (jobs.create_job(config) for _ in range(3))
    jobs.write_status(running, **_own_process_status(state="running", slot="cpu"))
    jobs.write_status(first, **_own_process_status(state="queued", created=1.0))
    jobs.write_status(second, **_own_process_status(state="queued", created=2.0))
    assert jobs.queue_position(first) == 1 and jobs.queue_position(second) == 2
    assert jobs.queue_position(running) is None
    assert jobs.try_acquire_slot(second, ["cpu"]) is None  # not first in line
    assert jobs.try_acquire_slot(first, ["cpu"]) is None  # the CPU is busy
    jobs.write_status(running, state="finished")
    assert jobs.try_acquire_slot(second, ["cpu"]) is None
    assert jobs.try_acquire_slot(first, ["cpu"]) == "cpu"
    assert jobs.job_state(first) == "running" and jobs.queue_position(second) == 1
    jobs.write_status(first, pid=None)  # its process is gone without a word: the job died
    assert jobs.job_state(first) == "died"


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_exit(job_dir: Path, timeout: float = 120) -> str:
    return _wait_for(lambda: (lambda s: s if s not in ("queued", "running") else None)(jobs.job_state(job_dir)),
                     timeout, f"{job_dir.name} to end")


def test_job_subprocess_cancel_kill_and_resume(tiny_causal, data_dir):
    """Cancel (SIGTERM) stops within a few seconds with a checkpoint; SIGKILL mid-run then --resume
    ends at the planned step count with a valid adapter."""
    # 40 steps: enough that the SIGKILL below lands mid-run even on an idle machine
    settings = quick(max_steps=40, save_every=2, eval_every=2, eval_generations=0, early_stopping_patience=0)
    config = ft.FinetuneConfig(train_data=str(COQA), output_dir=str(data_dir / "adapters" / "job-test"),
                               model_name=tiny_causal, dtype="float32", device="cpu", settings=settings)
    job = jobs.start_job(config)
    assert jobs.job_command(job)[:3] == ["python", "-m", "training.finetune"]
    assert (job / "data").is_dir() and jobs.read_config(job).train_data.startswith(str(job))
    _wait_for(lambda: jobs.job_view(job).step >= 2, 120, "step 2")
    asked = time.monotonic()
    assert jobs.cancel_job(job).startswith("Cancelling")
    assert _wait_exit(job) == "cancelled", (job / "train.log").read_text()[-2000:]
    assert time.monotonic() - asked < 15
    view = jobs.job_view(job)
    assert view.checkpoint and ft.checkpoint_step(view.checkpoint) == view.step < 40

    jobs.resume_job(job)
    _wait_for(lambda: jobs.job_view(job).step >= view.step + 3, 120, "the resumed run to pass a checkpoint")
    status = jobs.read_status(job)
    os.kill(status["pid"], signal.SIGKILL)
    assert _wait_exit(job) == "died"

    jobs.resume_job(job)
    assert _wait_exit(job, 180) == "finished", (job / "train.log").read_text()[-2000:]
    view = jobs.job_view(job)
    assert view.step == view.max_steps == 40 and view.adapter == config.output_dir
    # each run said what it did before its first step, in the log and (last) in the status
    log = (job / "train.log").read_text()
    assert len(re.findall(r"^reading and checking train-\S+\.json$", log, re.M)) == 3, log[:2000]
    assert len(re.findall(rf"^loading the base model {re.escape(tiny_causal)}$", log, re.M)) == 3
    assert len(re.findall(r"^encoding the training examples: ([\d,]+) / \1$", log, re.M)) == 3
    assert jobs.read_status(job)["preparing"] is None
    train_steps = [r["step"] for r in view.progress if "loss" in r]
    assert train_steps == list(range(1, 41))
    from convo.ui.common import local_adapters

    assert local_adapters() == [config.output_dir]
    assert load_model(tiny_spec(tiny_causal, adapter=view.adapter)).model is not None


@pytest.mark.timeout(420)
def test_two_process_data_parallel_job_through_accelerate_launch(tiny_causal, data_dir):
    """A job with num_processes=2 runs ``accelerate launch`` (two CPU processes over gloo): it
    finishes, rank 0 alone writes progress and the adapter, and the adapter loads and differs from the base."""
    import torch

    settings = quick(max_steps=4, batch_size=2, eval_every=2, save_every=2, eval_generations=0,
                     early_stopping_patience=0)
    config = ft.FinetuneConfig(train_data=str(COQA), output_dir=str(data_dir / "adapters" / "ddp"),
                               model_name=tiny_causal, dtype="float32", device="cpu", settings=settings,
                               num_processes=2)
    job = jobs.start_job(config)
    command = jobs.job_command(job)
    assert command[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert command[command.index("--num_processes") + 1] == "2" and "training.finetune" in command
    assert _wait_exit(job, 360) == "finished", (job / "train.log").read_text()[-3000:]
    log = (job / "train.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    raw = [json.loads(line) for line in (job / "progress.jsonl").read_text().splitlines()]
    assert [r["step"] for r in raw if "loss" in r] == [1, 2, 3, 4]  # one writer, not one per process
    view = jobs.job_view(job)
    assert view.adapter == config.output_dir and view.metrics["steps"] == 4
    assert jobs.read_config(job).num_processes == 2  # a resume launches two processes again
    n_train = ft.read_metadata(view.adapter)["counts"]["train_examples"]
    # each process walks its half of the data: 4 steps of batch 2 cover twice the epoch share of one process
    one_process = 4 / -(-n_train // 2)
    assert view.metrics["epochs"] >= 1.5 * one_process, (view.metrics["epochs"], n_train)
    tuned = load_model(tiny_spec(tiny_causal, adapter=view.adapter))
    base = load_model(tiny_spec(tiny_causal))
    ids = base.tokenizer("Where did Marta live?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert not torch.allclose(tuned.model(ids).logits, base.model(ids).logits)


def test_cancel_of_a_queued_job_ends_it(tiny_causal, data_dir):
    blocker = jobs.create_job(ft.FinetuneConfig(train_data=str(COQA), output_dir=str(data_dir / "x")))
    jobs.write_status(blocker, **_own_process_status(state="running", slot="cpu"))
    job = jobs.start_job(ft.FinetuneConfig(train_data=str(COQA), output_dir=str(data_dir / "y"), model_name=tiny_causal,
                                         device="cpu"))
    assert jobs.job_view(job).queue_position == 1
    jobs.cancel_job(job)
    assert _wait_exit(job, 60) == "cancelled"
    assert not (data_dir / "y").exists()


# ----------------------------------------------------------------------------- hub


def test_push_sends_only_adapter_files_and_never_the_token(trained, tiny_causal, monkeypatch, tmp_path, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    result, _, folder = trained
    hub = serve_fake_hub(monkeypatch, tmp_path, {TOKEN: "alice"})
    try:
        url = ft.push_adapter_to_hub(result.output_dir, "alice/curious-tiny", token=TOKEN, private=True)
        files = hub.files("alice/curious-tiny")
        repo = hub.repo("alice/curious-tiny")
    finally:
        hub.stop()
    assert url.endswith("alice/curious-tiny")
    assert set(files) - {".gitattributes"} == {"README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                          "tokenizer_config.json", "chat_template.jinja", "convo_adapter.json"}
    assert json.loads(files["convo_adapter.json"])["prompt_style"] == "fewshot"  # (a qg adapter: see test_hub)
    assert repo.private is True
    assert b"alice/curious-tiny" in files["README.md"]
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == tiny_causal
    for path in folder.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in caplog.text


# ----------------------------------------------------------------------------- the tab's handlers


@pytest.fixture
def tab():
    from convo.ui import finetune as tab_module

    return tab_module


def test_tab_upload_shows_the_report_with_counts(tab):
    text, task, start = tab.inspect_upload(str(COQA), None, None, 512)
    assert "**coqa_simple.json**: simplified CoQA, ready to train, 14 examples for task `qg`." in text
    assert "| passages | 3 |" in text and "| questions | 14 |" in text
    assert task["value"] == "qg" and start["interactive"] is True
    text, task, start = tab.inspect_upload(str(CHAT), None, "qg", 512)  # a chat file switches the task to chat
    assert task["value"] == "chat" and "6 examples for task `chat`" in text
    # instruction data in the Alpaca layout is read as conversations (it was "unrecognised format")
    text, task, start = tab.inspect_upload(str(DATA / "good" / "alpaca.json"), None, "qg", 512)
    assert task["value"] == "chat" and "Alpaca, ready to train, 3 examples for task `chat`" in text
    assert start["interactive"] is True
    text, _, start = tab.inspect_upload(str(DATA / "bad" / "coqa_empty_data.json"), None, None, 512)
    assert 'rejected: file has no records: "data" is empty' in text and start["interactive"] is False
    text, _, start = tab.inspect_upload(str(COQA), str(DATA / "bad" / "invalid_json.json"), "qg", 512)
    assert "**Validation file**" in text and "invalid JSON at line 3" in text and start["interactive"] is False


def test_tab_shows_the_planned_time_split_before_the_run(tab):
    # task, epochs, max_steps, batch, accum, lr, max_length, val_fraction, eval_every, save_every, patience,
    # seed, qlora, r, alpha, dropout: as the tab's settings inputs
    values = [None, 3, 4, 2, 1, 2e-4, 512, 0.25, 2, 2, 0, 42, "auto", 16, 32, 0.05]
    text = tab.plan_text(str(COQA), None, *values)
    # 14 questions: 4 held out, 10 trained on; 4 steps of 2 (x4 with checkpointing) vs 3 x 4 validation
    # examples (before the first step, after steps 2 and 4)
    assert text == ("**Planned**: 4 steps of 2 examples on 10 training examples; validation loss 3 times (the first "
                    "on the base model) on 4 of 4 held-out examples. Time: about 73% training, 27% validation, then "
                    "generating for 4 held-out examples."), text
    assert "validation loss" not in tab.plan_text(str(COQA), None, *values[:7], 0, *values[8:])
    # a batch larger than the data, and one of everything: no "1 steps of 8 examples on 2 training examples"
    small = tab.plan_text(str(COQA), None, None, 3, 1, 16, 1, 2e-4, 512, 0.1, 2, 2, 0, 42, "auto", 16, 32, 0.05)
    assert small == ("**Planned**: 1 step of all 13 training examples (batch size 16); validation loss 2 times "
                     "(the first on the base model) on 1 of 1 held-out example. Time: about 97% training, 3% "
                     "validation, then generating for 1 held-out example."), small
    assert tab.plan_text(None, None, *values) == ""
    assert tab.plan_text(str(DATA / "bad" / "coqa_empty_data.json"), None, *values) == ""


def test_the_tabs_hub_fetch_fills_the_boxes_it_should(tab, tmp_path, monkeypatch):
    """A dataset's id fills both boxes (the validation split's when it has one, else clears it and says
    part of the training file is held out); a named file fills the training box only; shards are joined."""
    import io

    import pyarrow.parquet as pq

    from convo.ui import finetune_data

    hub = serve_fake_hub(monkeypatch, tmp_path, {TOKEN: "alice"})
    parquet = (DATA / "good" / "coqa_hf.parquet").read_bytes()
    hub.add_repo("stanfordnlp/coqa", {"data/train-00000-of-00001.parquet": parquet,
                                      "data/validation-00000-of-00001.parquet": parquet}, repo_type="dataset")
    hub.add_repo("alice/talks", {"train.jsonl": (DATA / "good" / "chat.jsonl").read_bytes()}, repo_type="dataset")
    try:
        train, val, status = tab.fetch_hub_data("stanfordnlp/coqa")
        assert Path(train).name == "train-00000-of-00001.parquet" and Path(val).name == "validation-00000-of-00001.parquet"
        assert status == ("Fetched `train-00000-of-00001.parquet` (3.9 kB) and `validation-00000-of-00001.parquet` "
                          "(3.9 kB) from the Hub.")
        train, val, status = tab.fetch_hub_data("stanfordnlp/coqa/data/validation-00000-of-00001.parquet")
        assert Path(train).name == "validation-00000-of-00001.parquet" and val == {"__type__": "update"}  # gr.skip()
        train, val, status = tab.fetch_hub_data("alice/talks")
        assert Path(train).read_bytes() == (DATA / "good" / "chat.jsonl").read_bytes() and val is None
        assert status.endswith("It has no validation split: part of the training file is held out.")
        # a split in shards comes as one file, and the report says so
        table = pq.read_table(DATA / "good" / "coqa_hf.parquet")  # 2 passages: a shard each
        shards = {}
        for i in (0, 1):
            sink = io.BytesIO()
            pq.write_table(table.slice(i, 1), sink)
            shards[f"data/train-0000{i}-of-00002-ab.parquet"] = sink.getvalue()
        hub.add_repo("alice/sharded", shards, repo_type="dataset")
        train, val, status = tab.fetch_hub_data("alice/sharded")
        assert Path(train).name == "train.parquet" and val is None
        assert re.match(r"Fetched `train.parquet` \(\d.\d kB, 2 files joined\) from the Hub\.", status), status
        assert finetune_data.example_count(train, "qg") == finetune_data.example_count(
            str(DATA / "good" / "coqa_hf.parquet"), "qg") == (6, "qg")
        # two validation splits: the training file stands, and the report says why no validation file came
        hub.add_repo("nyu-mll/mnli", {"data/train-00000-of-00001.parquet": parquet,
                                      "data/validation_matched-00000-of-00001.parquet": parquet,
                                      "data/validation_mismatched-00000-of-00001.parquet": parquet}, repo_type="dataset")
        train, val, status = tab.fetch_hub_data("nyu-mll/mnli")
        assert Path(train).name == "train-00000-of-00001.parquet" and val is None
        assert status == ("Fetched `train-00000-of-00001.parquet` (3.9 kB) from the Hub. Validation: The dataset "
                          "nyu-mll/mnli has 2 splits for its validation split (data/validation_matched (1 file), "
                          "data/validation_mismatched (1 file)): name one, as nyu-mll/mnli/data/validation_matched. "
                          "Part of the training file is held out."), status
        train, val, status = tab.fetch_hub_data("alice/none")
        assert train == val == {"__type__": "update"} and status.startswith("**Could not fetch it**: Repository alice/none")
    finally:
        hub.stop()


def test_the_plan_parses_a_file_once_not_on_every_settings_change(tab, tmp_path, monkeypatch):
    """A 108k-question file took 16.7 s to show its plan, parsed twice, and again for every setting."""
    from convo.ui import finetune_data

    parses = []
    real = finetune_data.load_examples
    monkeypatch.setattr(finetune_data, "load_examples",
                        lambda *args, **kwargs: parses.append(args) or real(*args, **kwargs))
    path = tmp_path / "many.json"
    path.write_text(json.dumps([{"context": f"Ada counted {i} sheep.", "questions": [f"What did Ada count in round {i}?"]}
                                for i in range(1_200)]))
    values = [None, 3, 0, 8, 1, 2e-4, 512, 0.1, 50, 100, 3, 42, "auto", 16, 32, 0.05]
    text = tab.plan_text(str(path), None, *values)
    assert text.startswith("**Planned**: 405 steps of 8 examples on 1,080 training examples; validation loss 10 times"), text
    assert "on 120 of 120 held-out examples" in text
    assert tab.plan_text(str(path), None, None, 1, *values[2:]).startswith("**Planned**: 135 steps")
    assert len(parses) == 1
    path.write_text(path.read_text().replace("round 7?", "round seven?"))  # a new file at the same path
    tab.plan_text(str(path), None, *values)
    assert len(parses) == 2
    other = tmp_path / "other.json"
    other.write_text(path.read_text().replace("sheep", "goats"))
    assert "ready to train, 1,200 examples" in tab.inspect_upload(str(other), None, None, 512)[0]
    assert tab.plan_text(str(other), None, *values) == text and len(parses) == 2  # the report's count


def test_tab_ignores_job_folders_it_did_not_create(tab, tmp_path, data_dir):
    (tmp_path / "config.json").write_text("{}")
    assert tab.own_job(str(tmp_path)) is None
    assert tab.cancel_training(str(tmp_path)) == "No training job to cancel."
    assert tab.poll(str(tmp_path))[0] == "No training job yet."


def test_tab_trains_compares_and_pushes(tab, tiny_causal, data_dir, monkeypatch, tmp_path, caplog):
    import logging

    import gradio as gr

    caplog.set_level(logging.DEBUG)
    # task, epochs, max_steps, batch, accum, lr, max_length, val share, eval/save every, patience, seed, qlora, r, alpha, dropout
    settings = ["qg", 1, 2, 4, 1, 5e-3, 256, 0.2, 2, 2, 0, 0, "off", 8, 16, 0.0]
    monkeypatch.setattr(tab, "default_model", lambda: tiny_causal)
    job_dir, status, *_ = tab.start_training(str(COQA), None, "my adapter", None, tiny_causal, *settings)
    assert Path(job_dir).parent == jobs.jobs_dir() and status.startswith(("**Queued**", "**Training**"))
    # Start again at once with the same upload and name (a double-click): the same job, no second one
    assert tab.start_training(str(COQA), None, "my adapter", None, tiny_causal, *settings)[0] == job_dir
    # the same file from another page is another person's Start: refused, not given the first one's job
    elsewhere, reason, *_ = tab.start_training(str(COQA), None, "my adapter", None, tiny_causal, *settings,
                                               session="another page")
    assert elsewhere is None and "A training job is already making the adapter" in reason, reason
    other = tmp_path / "other.json"  # another upload for the adapter a live job is making: refused
    other.write_bytes(COQA.read_bytes())
    refused, reason, *_ = tab.start_training(str(other), None, "my adapter", None, tiny_causal, *settings)
    assert refused is None and "A training job is already making the adapter" in reason, reason
    assert [j for j in jobs.jobs_dir().iterdir() if j.is_dir()] == [Path(job_dir)]
    _wait_exit(Path(job_dir), 180)
    status, progress, plot, command, metrics, samples, adapters, timer = tab.poll(job_dir)
    adapter = str(data_dir / "adapters" / "my-adapter")
    assert status.startswith("**Finished**") and "`my-adapter`" in status, (Path(job_dir) / "train.log").read_text()[-2000:]
    assert adapter not in status  # visitors see the trained adapter's name; its server path stays on the server
    assert 'value="2" max="2"' in progress
    frame = plot["value"]
    assert plot["elem_classes"] == []  # in view: it has losses (folded away while it had none)
    assert set(frame["split"]) == {"train", "validation"} and frame["step"].max() == 2
    assert re.search(r"latest loss: train \d\.\d{4} at step 2, validation \d\.\d{4} at step 2<", progress), progress
    assert command.startswith("python -m training.finetune --train_data ") and f"--job_dir {job_dir}" in command
    assert "| ROUGE-L (held-out) |" in metrics and list(samples.columns) == ["prompt", "reference", "base model", "adapter"]
    assert "my-adapter" in adapters["choices"] and timer.active is False
    *drawn, key = tab.tick(job_dir, None)  # the timer draws a job once per change, then skips
    assert drawn[0] == status and tab.tick(job_dir, key) == (*(gr.skip(),) * len(drawn), key)
    jobs.write_status(job_dir, step=2)
    assert tab.tick(job_dir, key)[0] == status
    assert tab.start_training(str(COQA), None, "my adapter", None, tiny_causal, *settings)[0] is None  # name taken

    compared = tab.compare_passages(job_dir, "The river flows past the old mill.\n\nAlice read about stars.", "none")
    assert len(compared) == 2 and list(compared.columns) == ["passage", "base model", "adapter"]

    hub = serve_fake_hub(monkeypatch, tmp_path, {TOKEN: "alice"})
    try:
        message, cleared = tab.push_to_hub(job_dir, "alice/my-adapter", False, TOKEN, None)
        files = hub.files("alice/my-adapter")
        failed, _ = tab.push_to_hub(job_dir, "alice/other", False, "hf_not_a_valid_token", None)
    finally:
        hub.stop()
    assert message.startswith("Pushed to [alice/my-adapter](") and cleared == ""
    assert "README.md" in files and "adapter_model.safetensors" in files
    # convo's record goes with it (its prompt style), without the held-out samples: the user's data
    assert set(json.loads(files["convo_adapter.json"])) <= {"base_model", "task", "prompt_style", "hyperparameters",
                                                             "metrics", "created"}
    assert failed.startswith("**Push failed**: The Hugging Face token was rejected (401)")
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in caplog.text


# ----------------------------------------------------------------------------- slow: the bundled model


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_qlora_30_steps_on_the_bundled_model_on_cpu(tmp_path):
    examples, _ = load_examples(COQA, "qg")
    # On the shared 2-core machine (load 5-8): batch 2 x 256 took 670 s, 1 x 128 392 s, 1 x 64 543 s. A CPU
    # QLoRA step is dominated by dequantizing the 4-bit weights (7-8 s at load 5), not by the tokens.
    settings = ft.TrainSettings(max_steps=30, batch_size=1, max_length=64, learning_rate=1e-3, qlora=True,
                                eval_every=15, save_every=15, eval_generations=0)
    started = time.monotonic()
    result = ft.train_adapter(ModelSpec("bundled", device="cpu"), examples, examples[:2], settings, tmp_path / "a")
    elapsed = time.monotonic() - started
    print(f"QLoRA 30 steps, bundled model, CPU: {elapsed:.0f} s")
    assert result.status == "finished" and result.steps == 30
    losses = [loss for _, loss in result.train_losses]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert ft.read_metadata(result.output_dir)["hyperparameters"]["quantization"] == "4bit"


def test_cancel_during_validation_stops_between_batches(tiny_causal, tmp_path):
    """A stop asked for in the middle of a validation pass ends it after the current batch (the
    Trainer's evaluation loop has no stop flag), keeps a checkpoint, and the pass reports its own progress."""
    examples, _ = load_examples(COQA, "qg")
    valid = examples * 10
    settings = quick(max_steps=6, batch_size=1, eval_every=1, save_every=1, eval_generations=0,
                     early_stopping_patience=0, eval_examples=0)  # 0: the whole validation set
    records, polls = [], []

    def should_stop():  # polled before training, after every validation batch (the base model's pass
        polls.append(1)  # first) and after step 1: stop at the third batch of the pass after step 1
        return len(polls) >= 1 + len(valid) + 1 + 3

    result = ft.train_adapter(tiny_spec(tiny_causal), examples, valid, settings, tmp_path / "a",
                              on_log=records.append, should_stop=should_stop)
    assert result.status == "cancelled" and result.steps == 1 and result.output_dir is None
    assert Path(result.checkpoint).name == "checkpoint-1"
    validating = [r for r in records if r.get("phase") == "validating"]
    assert validating[-1]["step"] == 1 and validating[-1]["eval_batches"] == len(valid) > validating[-1]["eval_batch"]
    # the base model's pass ran whole (a point at step 0); the one after step 1 was cut short: no point
    assert [r["step"] for r in records if "eval_loss" in r] == [0]


def test_cancel_during_the_base_models_validation_keeps_no_checkpoint(tiny_causal, tmp_path):
    """A stop in the validation pass before the first step: nothing was trained, so no checkpoint
    (a Resume starts again) and no validation loss point."""
    examples, _ = load_examples(COQA, "qg")
    settings = quick(max_steps=6, batch_size=1, eval_every=1, save_every=1, eval_generations=0,
                     early_stopping_patience=0, eval_examples=0)
    polls, records = [], []
    result = ft.train_adapter(tiny_spec(tiny_causal), examples, examples * 10, settings, tmp_path / "a",
                              on_log=records.append, should_stop=lambda: polls.append(1) or len(polls) >= 4)
    assert result.status == "cancelled" and result.steps == 0 and result.checkpoint is None
    assert not list((tmp_path / "a.checkpoints").glob("checkpoint-*"))
    validating = [r for r in records if r.get("phase") == "validating"]
    assert validating and all(r["step"] == 0 and r["eval_batch"] < r["eval_batches"] for r in validating)
    assert not any("eval_loss" in r or "loss" in r for r in records)


def test_job_cancel_during_validation_ends_within_30_s(tiny_causal, data_dir, tmp_path):
    """The job shows "validating" with its own batch progress, and Cancel during it ends the job fast."""
    records = [json.loads(line) for line in CHAT.read_text().splitlines()]
    val = tmp_path / "val.jsonl"
    n_val = 2400  # a long validation pass for a tiny model (distinct records: duplicates are dropped)
    with open(val, "w") as fh:
        for i in range(n_val):
            record = json.loads(json.dumps(records[i % len(records)]))
            record["messages"][-1]["content"] += f" ({i})"
            fh.write(json.dumps(record) + "\n")
    settings = quick(max_steps=4, batch_size=1, eval_every=1, save_every=1, eval_generations=0, eval_examples=0,
                     early_stopping_patience=0, task="chat")
    config = ft.FinetuneConfig(train_data=str(CHAT), val_data=str(val), output_dir=str(data_dir / "adapters" / "v"),
                               model_name=tiny_causal, dtype="float32", device="cpu", settings=settings)
    job = jobs.start_job(config)
    view = _wait_for(lambda: (lambda v: v if v.phase == "validating" and v.eval_batch >= 1 else None)(jobs.job_view(job)),
                     180, "the first validation pass")
    from convo.ui.job_view import progress_html, status_text

    assert "Validating" in status_text(view) and 'data-phase="validating"' in progress_html(view)
    asked = time.monotonic()
    jobs.cancel_job(job)
    assert _wait_exit(job) == "cancelled", (job / "train.log").read_text()[-2000:]
    assert time.monotonic() - asked < 30
    view = jobs.job_view(job)  # cancelled in the base model's pass, before the first step
    assert view.step == 0 and view.eval_batch < view.eval_batches == n_val and view.checkpoint is None


def test_held_out_chat_examples_show_the_conversation_so_far():
    """For chat data the held-out table's prompt is the conversation the reply answers, its end kept
    when long (it showed the last user message alone: "Which variety?" with no garden in sight)."""
    from convo.ui.job_view import SAMPLE_CHARS, samples_frame

    examples, _ = load_examples(DATA / "good" / "sharegpt.jsonl", "chat")
    shown = ft.prompt_text(examples[0][:-1])
    first, *_, last = [m for m in examples[0][:-1] if m["role"] != "system"]
    assert shown.startswith(f"User: {first['content']}\n") and shown.endswith(f"User: {last['content']}")
    long = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "Go on?"},
            {"role": "user", "content": "The last turn."}]
    frame = samples_frame([{"prompt": ft.prompt_text(long), "reference": "r", "base": "b", "adapter": "a"},
                           {"prompt": "passage " * 100, "reference": "r", "base": "b", "adapter": "a"}])
    assert list(frame.columns) == ["prompt", "reference", "base model", "adapter"]
    cut_conversation, cut_passage = frame["prompt"]
    assert len(cut_conversation) == len(cut_passage) == SAMPLE_CHARS
    assert cut_conversation.startswith("...") and cut_conversation.endswith("Assistant: Go on?\nUser: The last turn.")
    assert cut_passage.startswith("passage passage") and cut_passage.endswith("...")
