"""The notebook API: ConversationModel.fit on whole conversations, save, reload, same output."""
import json

import pytest

from convo import ConversationModel
from convo.engine import adapter_base, get_model
from convo.settings import ModelSpec

GREEDY = dict(temperature=0, max_new_tokens=12, repetition_penalty=1.0)


def conversations(n):
    topics = ["river", "mill", "birds", "bicycle", "stars", "bread", "music", "library", "France", "plants"]
    return [[f"I like the {t}.", f"What do you like most about the {t}?", f"The {t} is calm.",
             f"Why does the {t} feel calm to you?"] for t in (topics * 3)[:n]]


def test_fit_lowers_validation_loss_and_the_adapter_reloads(tiny_causal, tmp_path):
    m = ConversationModel.from_pretrained(tiny_causal, dtype="float32")
    base = ConversationModel.from_pretrained(tiny_causal, dtype="float32")
    tuned = m.fit(conversations(20), valid=conversations(4), output_dir=tmp_path / "adapter", max_steps=30,
                  batch_size=4, learning_rate=5e-3, eval_every=10, save_every=30, max_length=128)
    result = tuned.train_result
    losses = [loss for _, loss in result.eval_losses]
    assert len(losses) >= 2 and losses[-1] < losses[0]
    assert tuned is m and m.spec.adapter == str(tmp_path / "adapter")
    saved = m.save_pretrained(tmp_path / "saved")
    assert (saved / "adapter_config.json").is_file() and (saved / "adapter_model.safetensors").is_file()
    assert adapter_base(saved) == tiny_causal
    reloaded = ConversationModel.from_pretrained(tiny_causal, adapter=str(saved), dtype="float32")
    context = ["I like the river.", "What do you like most about the river?", "The river is calm."]
    assert reloaded.generate(context, **GREEDY).responses == tuned.generate(context, **GREEDY).responses
    assert reloaded.generate(context, **GREEDY).responses != base.generate(context, **GREEDY).responses
    # and the Chat tab lists adapters saved under the data dir by path: the same folder loads there
    assert get_model(ModelSpec(tiny_causal, adapter=str(saved), dtype="float32")).spec.adapter == str(saved)


def test_fit_reads_any_file_the_finetune_tab_accepts(tiny_causal, tmp_path):
    data = tmp_path / "chats.jsonl"
    data.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": c[0]},
                                                      {"role": "assistant", "content": c[1]}]})
                              for c in conversations(12)))
    m = ConversationModel.from_pretrained(tiny_causal, dtype="float32")
    tuned = m.fit(str(data), output_dir=tmp_path / "adapter", max_steps=4, batch_size=4, eval_every=2,
                  save_every=4, max_length=64)
    assert tuned.spec.adapter == str(tmp_path / "adapter")


def test_replies_use_the_models_own_sampling_unless_told(tiny_causal, tmp_path):
    """The Python API (and the terminal chat) used the general defaults, temperature 0.7 and a repetition
    penalty, where the app uses the model's: its generation_config.json's, or convo's for the bundled model."""
    import shutil

    from convo.settings import BUNDLED, MODEL_SAMPLING

    folder = tmp_path / "model"
    shutil.copytree(tiny_causal, folder)
    (folder / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": 0.6, "top_p": 0.8}))
    m = ConversationModel.from_pretrained(str(folder), dtype="float32")
    used = m._sampling({})
    assert (used.temperature, used.top_p) == (0.6, 0.8)
    assert m._sampling({"temperature": 0}).temperature == 0  # what the caller gives wins
    with pytest.raises(TypeError):
        m._sampling({"temprature": 0})  # a mistyped field is not dropped
    assert m.generate(["Hi"], max_new_tokens=4).responses[0] is not None
    from convo.settings import model_sampling

    assert model_sampling(BUNDLED) == MODEL_SAMPLING[BUNDLED] and model_sampling(BUNDLED).temperature == 0.2
