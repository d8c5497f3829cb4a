"""Tests for convo.hub and spaces/ against tests/hub_server.py, a local Hub the real huggingface_hub client talks to.

Run: ``python -m pytest tests/test_hub.py -q`` (a few seconds; no network).
"""
from __future__ import annotations

import json
import logging
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from safetensors.numpy import load_file, save_file

try:  # tests/ is on sys.path under pytest's default import mode; tests.hub_server if tests/ becomes a package
    from hub_server import FakeHub, card_metadata, serve_fake_hub
except ImportError:  # pragma: no cover
    from tests.hub_server import FakeHub, card_metadata, serve_fake_hub

from convo import hub as convo_hub
from convo import hub_data
from convo.cards import adapter_card, dataset_card
from convo.hub import (
    SIGN_IN_HELP,
    HubError,
    download_adapter,
    list_adapters,
    push_adapter,
    push_dataset,
    resolve_token,
    whoami,
)
from spaces import publish as space_publish

TOKEN = "hf_fake_token_for_tests"
BOB_TOKEN = "hf_bob_token_for_tests"
READ_TOKEN = "hf_read_token_for_tests"
WRONG_TOKEN = "hf_wrong_token_for_tests"
ADAPTER_UPLOADS = {
    "adapter_config.json",
    "adapter_model.safetensors",
    "README.md",
    "tokenizer_config.json",
    "chat_template.jinja",
}
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    server = serve_fake_hub(
        monkeypatch, tmp_path, {TOKEN: "alice", BOB_TOKEN: "bob", READ_TOKEN: "alice"}, read_only_tokens={READ_TOKEN}
    )
    yield server
    server.stop()


def _card() -> str:
    return adapter_card(
        repo_id="alice/curious",
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        data_file_name="coqa_small.json",
        data_sha256="ab" * 32,
        counts={"examples": 120, "skipped": 3},
        hyperparameters={"r": 8, "lora_alpha": 16, "learning_rate": 2e-4, "hf_token": TOKEN},
        metrics={"train_loss": 1.25, "eval_loss": 1.5},
    )


@pytest.fixture
def adapter_dir(tmp_path) -> Path:
    """A training run folder: the adapter files plus everything that must stay local."""
    folder = tmp_path / "run" / "adapter"
    (folder / "checkpoint-10").mkdir(parents=True)
    config = {"peft_type": "LORA", "r": 8, "base_model_name_or_path": "x/y"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    save_file({"base_model.model.lora_A.weight": np.arange(12, dtype=np.float32).reshape(3, 4)},
              str(folder / "adapter_model.safetensors"))
    (folder / "README.md").write_text(_card())
    (folder / "tokenizer_config.json").write_text('{"model_max_length": 2048}')
    (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    # Must NOT be uploaded:
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(folder / "checkpoint-10" / "adapter_model.safetensors"))
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"optimizer state")
    (folder / "optimizer.pt").write_bytes(b"optimizer state")
    (folder / "trainer_state.json").write_text('{"log_history": []}')
    (folder / "job.json").write_text('{"output_dir": "/home/alice/runs"}')
    (folder / "training_args.bin").write_bytes(b"pickled args")
    return folder


def _files_on_disk(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------- the fake Hub itself


def test_fake_hub_speaks_the_real_client(hub, tmp_path):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    assert api.whoami()["name"] == "alice"

    url = api.create_repo("alice/m1")
    assert str(url) == f"{hub.url}/alice/m1"
    assert str(api.create_repo("alice/m1", exist_ok=True)) == f"{hub.url}/alice/m1"
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo("alice/m1")
    assert conflict.value.response.status_code == 409
    with pytest.raises(HfHubHTTPError) as forbidden:
        api.create_repo("bob/m1")
    assert forbidden.value.response.status_code == 403
    assert str(api.create_repo("alice/d1", repo_type="dataset")) == f"{hub.url}/datasets/alice/d1"
    assert str(api.create_repo("alice/s1", repo_type="space", space_sdk="gradio")) == f"{hub.url}/spaces/alice/s1"
    assert api.space_info("alice/s1").sdk == "gradio"

    folder = tmp_path / "up"
    (folder / "sub").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlibrary_name: peft\n---\n# m1\n")
    (folder / "sub" / "w.bin").write_bytes(bytes(range(256)) * 4)
    api.upload_folder(repo_id="alice/m1", folder_path=folder)
    api.create_commit("alice/m1", [CommitOperationAdd("extra.txt", b"x")], commit_message="extra")
    expected = {".gitattributes", "README.md", "sub/w.bin", "extra.txt"}
    assert set(api.list_repo_files("alice/m1")) == expected
    assert _files_on_disk(hub.mirror_path("alice/m1")) == expected

    info = api.model_info("alice/m1")
    assert info.library_name == "peft" and "peft" in info.tags
    assert info.sha == hub.repo("alice/m1").head.oid
    assert {s.rfilename for s in api.repo_info("alice/m1").siblings} == expected
    assert [m.id for m in api.list_models(author="alice")] == ["alice/m1"]

    path = hf_hub_download("alice/m1", "sub/w.bin", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "c1")
    assert Path(path).read_bytes() == bytes(range(256)) * 4
    snap = snapshot_download("alice/m1", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "c2")
    assert _files_on_disk(Path(snap)) == expected
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("alice/missing")

    commits = hub.requests_to("POST", "/api/models/alice/m1/commit/")
    assert commits and {r.token for r in commits} == {TOKEN}
    with pytest.raises(HfHubHTTPError) as unauthorized:
        HfApi(endpoint=hub.url, token=WRONG_TOKEN).whoami()
    assert unauthorized.value.response.status_code == 401


def test_fake_hub_hides_private_repos_from_others(hub):
    hub.add_repo("alice/secret", {"adapter_config.json": "{}"}, private=True)
    assert HfApi(endpoint=hub.url, token=TOKEN).model_info("alice/secret").private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=BOB_TOKEN).model_info("alice/secret")
    assert list(HfApi(endpoint=hub.url, token=BOB_TOKEN).list_models(author="alice")) == []


# --------------------------------------------------------------------------- push_adapter


def test_push_adapter_uploads_only_the_adapter_files(hub, adapter_dir):
    url = push_adapter(adapter_dir, "alice/curious", token=TOKEN)

    assert url == f"{hub.url}/alice/curious"
    assert set(hub.files("alice/curious")) == ADAPTER_UPLOADS | {".gitattributes"}
    mirrored = hub.mirror_path("alice/curious")
    assert _files_on_disk(mirrored) == ADAPTER_UPLOADS | {".gitattributes"}
    for name in ADAPTER_UPLOADS:
        assert (mirrored / name).read_bytes() == (adapter_dir / name).read_bytes(), name
    weights = load_file(str(mirrored / "adapter_model.safetensors"))
    expected = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(weights["base_model.model.lora_A.weight"], expected)
    assert hub.repo("alice/curious").private is False
    assert {r.token for r in hub.requests} == {TOKEN}


def test_push_adapter_twice_updates_the_same_repo(hub, adapter_dir):
    push_adapter(adapter_dir, "alice/curious", token=TOKEN, private=True)
    (adapter_dir / "README.md").write_text(_card() + "\nRetrained.\n")
    push_adapter(adapter_dir, "alice/curious", token=TOKEN, commit_message="retrain")
    assert hub.files("alice/curious")["README.md"].decode().endswith("Retrained.\n")
    assert hub.repo("alice/curious").head.message == "retrain"
    assert hub.repo("alice/curious").private is True


def test_push_adapter_without_config_names_the_folder(hub, tmp_path):
    folder = tmp_path / "not-an-adapter"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(HubError) as err:
        push_adapter(folder, "alice/x", token=TOKEN)
    assert str(err.value) == f"No adapter_config.json in {folder}: choose the folder of a trained LoRA adapter."
    assert hub.requests == []


def test_push_adapter_without_weights(hub, tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    with pytest.raises(HubError, match=r"^No adapter_model\.safetensors in .*half: the adapter weights are missing\.$"):
        push_adapter(folder, "alice/x", token=TOKEN)


def test_push_refuses_a_file_that_contains_the_token(hub, adapter_dir):
    (adapter_dir / "tokenizer_config.json").write_text(json.dumps({"token": TOKEN}))
    with pytest.raises(HubError) as err:
        push_adapter(adapter_dir, "alice/curious", token=TOKEN)
    assert str(err.value) == "Refusing to upload tokenizer_config.json: it contains your Hugging Face token."
    assert hub.requests_to("POST", "/api/models/alice/curious/commit/") == []


# --------------------------------------------------------------------------- push_dataset


def test_push_dataset_arrives_with_its_card(hub, tmp_path):
    data = tmp_path / "conversations.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    config = tmp_path / "config.json"
    config.write_text('{"name": "words"}')
    gen_config = {"name": "words", "words": ["tea"], "api_token": TOKEN, "nested": {"password": "p", "n": 2}}
    card = dataset_card(repo_id="alice/talks", config=gen_config, counts={"conversations": 1})

    url = push_dataset([data, config], "alice/talks", token=TOKEN, card=card)

    assert url == f"{hub.url}/datasets/alice/talks"
    files = hub.files("alice/talks", "dataset")
    assert set(files) == {".gitattributes", "README.md", "conversations.jsonl", "config.json"}
    assert files["conversations.jsonl"] == data.read_bytes()
    assert files["README.md"].decode() == card
    meta = card_metadata(files["README.md"])
    assert meta["task_categories"] == ["text-generation"] and meta["language"] == ["en"]
    assert "convo" in meta["tags"]
    block = re.search(r"```json\n(.*?)\n```", card, flags=re.DOTALL).group(1)
    assert json.loads(block) == {"name": "words", "words": ["tea"], "nested": {"n": 2}}
    assert _files_on_disk(hub.mirror_path("alice/talks", "dataset")) == set(files)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("data.csv", "Cannot push data.csv: only .jsonl and .json data files are uploaded."),
        ("missing.jsonl", "Data file not found: {path}."),
    ],
)
def test_push_dataset_rejects_bad_files(hub, tmp_path, name, message):
    path = tmp_path / name
    if name != "missing.jsonl":
        path.write_text("a,b\n")
    with pytest.raises(HubError) as err:
        push_dataset([path], "alice/talks", token=TOKEN, card="# card\n")
    assert str(err.value) == message.format(path=path)
    assert hub.requests == []


# --------------------------------------------------------------------------- list and download


def test_list_adapters_finds_the_users_peft_repos(hub, adapter_dir):
    push_adapter(adapter_dir, "alice/curious", token=TOKEN)  # library_name: peft in its card
    hub.add_repo("alice/bare-adapter", {"adapter_config.json": "{}"})  # no card, has the config
    hub.add_repo("alice/tagged", {"README.md": "---\ntags: [peft]\n---\n"})
    hub.add_repo("alice/private-adapter", {"adapter_config.json": "{}"}, private=True)
    hub.add_repo("alice/full-model", {"config.json": "{}", "README.md": "---\nlibrary_name: transformers\n---\n"})
    hub.add_repo("bob/their-adapter", {"adapter_config.json": "{}"})
    hub.add_repo("alice/a-dataset", {"adapter_config.json": "{}"}, repo_type="dataset")

    assert list_adapters(TOKEN) == ["alice/bare-adapter", "alice/curious", "alice/private-adapter", "alice/tagged"]


def test_download_adapter_round_trip(hub, adapter_dir, tmp_path):
    push_adapter(adapter_dir, "alice/curious", token=TOKEN)
    folder = download_adapter("alice/curious", token=TOKEN)
    assert folder.is_relative_to(tmp_path / "hf_home" / "hub")
    assert _files_on_disk(folder) == ADAPTER_UPLOADS
    for name in ADAPTER_UPLOADS:
        assert (folder / name).read_bytes() == (adapter_dir / name).read_bytes()


def test_a_pushed_adapter_keeps_its_prompt_style_but_not_its_samples(hub, adapter_dir, tmp_path):
    """convo's record of an adapter goes with it, trimmed: a question-generation adapter downloaded from
    the Hub was asked in the chat prompt (its "fewshot" style stayed behind), and the held-out samples
    (the user's data) and the data's details stay local."""
    from convo.engine.loading import adapter_prompt_style

    record = {"base_model": "bundled", "task": "qg", "prompt_style": "fewshot", "train_file": "private-notes.json",
              "metrics": {"eval_loss": 1.5}, "samples": [{"prompt": "my diary entry", "reference": "Why?"}]}
    (adapter_dir / "convo_adapter.json").write_text(json.dumps(record))
    push_adapter(adapter_dir, "alice/qg", token=TOKEN)
    pushed = json.loads(hub.files("alice/qg")["convo_adapter.json"])
    assert pushed == {"base_model": "bundled", "task": "qg", "prompt_style": "fewshot", "metrics": {"eval_loss": 1.5}}
    folder = download_adapter("alice/qg", token=TOKEN)
    assert adapter_prompt_style(folder) == "fewshot"
    assert b"diary" not in b"".join(hub.files("alice/qg").values())


def test_download_adapter_errors(hub):
    hub.add_repo("alice/full-model", {"config.json": "{}"})
    with pytest.raises(HubError) as not_adapter:
        download_adapter("alice/full-model")
    assert str(not_adapter.value) == "alice/full-model is not a PEFT adapter: it has no adapter_config.json."
    with pytest.raises(HubError) as missing:
        download_adapter("alice/nothing-here", token=TOKEN)
    assert str(missing.value) == (
        "Repository alice/nothing-here was not found on the Hub (or it is private and this token cannot read it)."
    )



@pytest.fixture
def fetch_tmp(tmp_path, monkeypatch) -> Path:
    """The system's temp folder for this test, where the Hub fetches land (in convo-hub-data/)."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def left_in_newest_fetch(fetch_tmp: Path) -> list[Path]:
    """The files the last fetch left in its folder (hf_hub_download's metadata under .cache aside): none
    after a join that failed, which removes its shards and what it had joined."""
    newest = max((fetch_tmp / "convo-hub-data").iterdir(), key=lambda folder: folder.stat().st_mtime)
    return [f for f in newest.rglob("*") if f.is_file() and ".cache" not in f.parts]

def test_a_hub_datasets_training_file_is_downloaded_by_its_id(hub, fetch_tmp):
    """``stanfordnlp/coqa`` as the Hub stores it: Parquet under data/, one file per split. Its id gives the
    train split's file and the validation split's, from one listing; an id and a path or the file's
    address give that file; the bytes are the Hub's."""
    train = (ROOT / "tests" / "data" / "good" / "coqa_hf.parquet").read_bytes()
    validation = (ROOT / "tests" / "data" / "good" / "squad_hf.parquet").read_bytes()
    hub.add_repo("stanfordnlp/coqa", {"README.md": "# CoQA", "data/train-00000-of-00001.parquet": train,
                                      "data/validation-00000-of-00001.parquet": validation}, repo_type="dataset")
    hub.requests.clear()
    fetched = hub_data.dataset_files("stanfordnlp/coqa", max_bytes=len(train))
    assert fetched.train.read_bytes() == train and fetched.train.name == "train-00000-of-00001.parquet"
    assert fetched.validation.read_bytes() == validation and fetched.note is None
    assert fetched.train.is_relative_to(fetch_tmp / "convo-hub-data")
    assert len([r for r in hub.requests if "/tree/" in r.path]) == 1  # one listing for both splits
    for source in ("stanfordnlp/coqa/data/validation-00000-of-00001.parquet",
                   f"{hub.url}/datasets/stanfordnlp/coqa/blob/main/data/validation-00000-of-00001.parquet"):
        fetched = hub_data.dataset_files(source)  # a file named: no validation split looked for
        assert fetched.train.read_bytes() == validation and fetched.validation is None and fetched.note is None
    assert hub_data.dataset_files("stanfordnlp/coqa", split="validation", validation=False).train.read_bytes() == validation
    # no validation split: none and no note; the dataset's only data file is its training file
    hub.add_repo("alice/one-file", {"talks.jsonl": '{"messages": []}\n'}, repo_type="dataset")
    fetched = hub_data.dataset_files("alice/one-file")
    assert fetched.train.name == "talks.jsonl" and fetched.validation is None and fetched.note is None
    hub.add_repo("alice/only-validation", {"validation.jsonl": '{"messages": []}\n'}, repo_type="dataset")
    fetched = hub_data.dataset_files("alice/only-validation")  # its one file trains; it is not also the validation
    assert (fetched.train.name, fetched.validation, fetched.note) == ("validation.jsonl", None, None)
    csv = (ROOT / "tests" / "data" / "good" / "flat_qa.csv").read_bytes()  # a spreadsheet's export, as many are
    hub.add_repo("alice/faq", {"train.csv": csv, "validation.csv": csv}, repo_type="dataset")
    fetched = hub_data.dataset_files("alice/faq")
    assert (fetched.train.name, fetched.validation.name) == ("train.csv", "validation.csv")
    assert fetched.train.read_bytes() == csv
    # a validation split over the cap is a note; the training file stands
    hub.add_repo("alice/big-validation", {"data/train-00000-of-00001.parquet": validation,
                                          "data/validation-00000-of-00001.parquet": train}, repo_type="dataset")
    assert len(validation) < len(train)
    fetched = hub_data.dataset_files("alice/big-validation", max_bytes=len(validation))
    assert fetched.train.read_bytes() == validation and fetched.validation is None
    assert fetched.note.startswith("alice/big-validation/data/validation-00000-of-00001.parquet is 0.0 MB, over the 0 MB")
    for _ in range(9):  # a shared server keeps the last 8 downloads
        hub_data.dataset_files("stanfordnlp/coqa")
    assert len(list((fetch_tmp / "convo-hub-data").iterdir())) == 8


def _shards(table, n: int) -> list[bytes]:
    """``table`` as ``n`` Parquet files of consecutive rows, as ``datasets`` writes a split's shards."""
    import io

    import pyarrow.parquet as pq

    parts = []
    step = -(-table.num_rows // n)
    for start in range(0, table.num_rows, step):
        sink = io.BytesIO()
        pq.write_table(table.slice(start, step), sink, row_group_size=2)
        parts.append(sink.getvalue())
    return parts


def test_a_split_in_shards_is_joined_into_one_file(hub, fetch_tmp):
    """A large split is stored in shards (``data/train_sft-00000-of-00003-<hash>.parquet``; the Hub's
    conversion: ``default/train/0000.parquet``). They were "2 files for its train split: name one";
    now they are downloaded and joined into one file whose rows are the shards' rows in order, and the
    shards are not kept beside it. A prefix of the paths names one split of several."""
    import pyarrow.parquet as pq

    from convo.data import load_examples

    good = ROOT / "tests" / "data" / "good"
    table = pq.read_table(good / "chat.parquet")
    assert table.num_rows >= 3
    sft = _shards(table, 3)
    gen = _shards(table.slice(0, 2), 2)
    files = {f"data/train_sft-0000{i}-of-00003-5e9a{i}.parquet": part for i, part in enumerate(sft)}
    files |= {f"data/train_gen-0000{i}-of-00002-77c{i}.parquet": part for i, part in enumerate(gen)}
    files |= {f"data/test_sft-0000{i}-of-00003-0b1{i}.parquet": part for i, part in enumerate(sft)}
    hub.add_repo("alice/ultrachat", files, repo_type="dataset")
    with pytest.raises(HubError) as several:
        hub_data.dataset_files("alice/ultrachat")
    assert str(several.value) == ("The dataset alice/ultrachat has 2 splits for its train split (data/train_gen "
                                  "(2 files), data/train_sft (3 files)): name one, as alice/ultrachat/data/train_gen.")
    fetched = hub_data.dataset_files("alice/ultrachat/data/train_sft")
    assert fetched.train.name == "train_sft.parquet" and fetched.train_parts == 3
    assert pq.read_table(fetched.train).to_pylist() == table.to_pylist()
    assert [f.name for f in fetched.train.parent.rglob("*") if f.is_file() and ".cache" not in f.parts] == [
        "train_sft.parquet"]  # the shards are in it, not beside it (hf_hub_download's metadata is under .cache)
    assert load_examples(fetched.train, "chat")[0] == load_examples(good / "chat.parquet", "chat")[0]
    # the Hub's Parquet conversion, and JSON Lines shards (joined line by line, a missing last newline added)
    lines = (good / "chat.jsonl").read_text().splitlines(keepends=True)
    hub.add_repo("alice/converted", {"default/train/0000.parquet": sft[0], "default/train/0001.parquet": sft[1],
                                     "default/train/0002.parquet": sft[2], "default/validation/0000.parquet": gen[0],
                                     "jsonl/train-00000-of-00002.jsonl": "".join(lines[:1]).rstrip("\n"),
                                     "jsonl/train-00001-of-00002.jsonl": "".join(lines[1:])}, repo_type="dataset")
    with pytest.raises(HubError, match=r"^The dataset alice/converted has 2 splits for default \(default/train "
                                       r"\(3 files\), default/validation \(1 file\)\): name one, as "
                                       r"alice/converted/default/train\.$"):
        hub_data.dataset_files("alice/converted/default")
    fetched = hub_data.dataset_files("alice/converted/default/train", max_bytes=10**6)
    assert pq.read_table(fetched.train).to_pylist() == table.to_pylist()
    assert (fetched.train_parts, fetched.validation) == (3, None)  # a path named: no validation split
    joined = hub_data.dataset_files("alice/converted/jsonl/train").train
    assert joined.name == "train.jsonl" and joined.read_text().splitlines() == [x.rstrip("\n") for x in lines]
    # gzipped JSON Lines shards (as Anthropic/hh-rlhf and OpenAssistant store them): joined without unpacking
    import gzip

    hub.add_repo("alice/zipped", {"data/train-00000-of-00002.jsonl.gz": gzip.compress("".join(lines[:1]).rstrip("\n").encode()),
                                  "data/train-00001-of-00002.jsonl.gz": gzip.compress("".join(lines[1:]).encode()),
                                  "data/test.jsonl.gz": gzip.compress(lines[0].encode())}, repo_type="dataset")
    fetched = hub_data.dataset_files("alice/zipped")
    assert (fetched.train.name, fetched.train_parts, fetched.validation) == ("train.jsonl.gz", 2, None)
    assert gzip.decompress(fetched.train.read_bytes()).decode() == "".join(lines)  # a line break ends shard 1's line
    assert load_examples(fetched.train, "chat")[0] == load_examples(good / "chat.jsonl", "chat")[0]
    # the cap counts every shard, before anything is downloaded
    with pytest.raises(HubError, match=r"^alice/ultrachat/data/train_sft \(3 files\) is 0\.0 MB, over the 0 MB limit"):
        hub_data.dataset_files("alice/ultrachat/data/train_sft", max_bytes=sum(map(len, sft)) - 1)
    # shards that are not one table
    hub.add_repo("alice/mixed", {"train-00000-of-00002.parquet": sft[0],
                                 "train-00001-of-00002.parquet": (good / "coqa_hf.parquet").read_bytes()},
                 repo_type="dataset")
    with pytest.raises(HubError, match=r"^train-00001-of-00002.parquet has other columns than train-00000-of-00002"):
        hub_data.dataset_files("alice/mixed")
    assert left_in_newest_fetch(fetch_tmp) == []


def test_a_saved_dataset_pushed_as_it_is_and_csv_shards_are_joined(hub, fetch_tmp):
    """A DatasetDict that ``save_to_disk`` wrote, pushed as it is (a folder per split of Arrow shards and
    JSON listings), gives its train split's shards joined into one Arrow stream and its validation split,
    the listings left out. CSV shards (gzipped or not) are joined under the first one's header; a shard
    with another header is refused, and nothing half-joined stays."""
    import gzip
    from convo.data import load_examples

    data = ROOT / "tests" / "data"
    saved = data / "saved" / "squad_dict"
    hub.add_repo("alice/saved", {str(f.relative_to(saved)): f.read_bytes() for f in saved.rglob("*") if f.is_file()},
                 repo_type="dataset")
    fetched = hub_data.dataset_files("alice/saved")
    assert (fetched.train.name, fetched.train_parts, fetched.validation.name) == ("train.arrow", 2, "data-00000-of-00001.arrow")
    assert load_examples(fetched.train, "qg")[0] == load_examples(data / "good" / "squad_hf.jsonl", "qg")[0]
    assert load_examples(fetched.validation, "qg")[1].questions == 2
    # both splits in shards: each joined into a file of its own (both were data.arrow, one over the other)
    shards = {f"{split}/{f.name}": f.read_bytes() for split in ("train", "validation")
              for f in (saved / "train").glob("*.arrow")}
    hub.add_repo("alice/saved2", {**shards, "dataset_dict.json": '{"splits": ["train", "validation"]}'},
                 repo_type="dataset")
    both = hub_data.dataset_files("alice/saved2")
    assert (both.train.name, both.validation.name) == ("train.arrow", "validation.arrow")
    assert both.train.is_file() and both.validation.is_file() and both.train != both.validation
    assert load_examples(both.train, "qg")[0] == load_examples(both.validation, "qg")[0]
    # CSV shards as pandas writes them, a quoted header cell holding a line break, the last row without one
    rows = (data / "good" / "flat_qa.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    header = '"context","question","answer"\n'
    assert rows[0].replace('"', "").strip() == "context,question,answer"
    first, second = header + "".join(rows[1:3]), header + "".join(rows[3:]).rstrip("\n")
    hub.add_repo("alice/csv", {"data/train-00000-of-00002.csv": first, "data/train-00001-of-00002.csv": second,
                               "gz/train-00000-of-00002.csv.gz": gzip.compress(first.encode()),
                               "gz/train-00001-of-00002.csv.gz": gzip.compress(("\ufeff" + second).encode()),
                               "bad/train-00000-of-00002.tsv": "a\tb\n1\t2\n", "bad/train-00001-of-00002.tsv": "a\tc\n1\t2\n"},
                 repo_type="dataset")
    joined = hub_data.dataset_files("alice/csv/data/train")
    assert joined.train.name == "train.csv" and joined.train.read_text() == header + "".join(rows[1:]).rstrip("\n") + "\n"
    assert load_examples(joined.train, "qg")[0] == load_examples(data / "good" / "flat_qa.csv", "qg")[0]
    zipped = hub_data.dataset_files("alice/csv/gz/train").train
    assert zipped.name == "train.csv.gz" and gzip.decompress(zipped.read_bytes()) == joined.train.read_bytes()
    with pytest.raises(HubError) as other:
        hub_data.dataset_files("alice/csv/bad/train")
    assert str(other.value) == ("bad/train-00001-of-00002.tsv has another header row than bad/train-00000-of-00002.tsv, "
                                "so they are not shards of one table ('a\\tc' against 'a\\tb').")
    assert left_in_newest_fetch(fetch_tmp) == []


def test_json_shards_are_joined_as_json_lines_or_as_one_list(hub, fetch_tmp):
    """``datasets``' ``to_json`` writes JSON Lines under a ``.json`` name: such shards are joined line by line;
    shards that are JSON lists (pretty-printed, an empty one among them) are joined into one list; shards of
    one JSON object each (CoQA's layout), or of different kinds, are named, and nothing half-joined stays."""
    from convo.data import load_examples

    good = ROOT / "tests" / "data" / "good"
    lines = (good / "chat.jsonl").read_text().splitlines(keepends=True)
    records = [json.loads(line) for line in lines]
    coqa = (good / "coqa.json").read_text()
    hub.add_repo("alice/json", {
        "lines/train-00000-of-00002.json": "".join(lines[:2]), "lines/train-00001-of-00002.json": lines[2].rstrip("\n"),
        "list/train-00000-of-00003.json": "\ufeff" + json.dumps(records[:2], indent=2) + "\n\n",
        "list/train-00001-of-00003.json": "[ ]", "list/train-00002-of-00003.json": json.dumps(records[2:]),
        "coqa/train-00000-of-00002.json": coqa, "coqa/train-00001-of-00002.json": coqa,
        "compact/train-00000-of-00002.json": json.dumps(json.loads(coqa)) + "\n",  # one object on one line
        "compact/train-00001-of-00002.json": json.dumps(json.loads(coqa)),
        "mixed/train-00000-of-00002.json": "".join(lines), "mixed/train-00001-of-00002.json": json.dumps(records),
    }, repo_type="dataset")
    joined = hub_data.dataset_files("alice/json/lines/train").train
    assert joined.name == "train.json" and joined.read_text() == "".join(lines)
    joined = hub_data.dataset_files("alice/json/list/train").train
    assert json.loads(joined.read_text()) == records
    assert load_examples(joined, "chat")[0] == load_examples(good / "chat.jsonl", "chat")[0]
    with pytest.raises(HubError) as one_object:
        hub_data.dataset_files("alice/json/coqa/train")
    assert str(one_object.value) == "coqa/train-00000-of-00002.json is one JSON object, so the shards are not joined: name one."
    with pytest.raises(HubError, match=r"^compact/train-00000-of-00002.json is one JSON object, so the shards are not"):
        hub_data.dataset_files("alice/json/compact/train")
    with pytest.raises(HubError) as mixed:
        hub_data.dataset_files("alice/json/mixed/train")
    assert str(mixed.value) == ("mixed/train-00001-of-00002.json is a JSON list where mixed/train-00000-of-00002.json is "
                                "JSON Lines, so the shards are not joined: name one.")
    assert left_in_newest_fetch(fetch_tmp) == []


def test_a_preference_dataset_in_gzipped_folders_is_fetched_by_its_file(hub, fetch_tmp):
    """Anthropic/hh-rlhf's layout: a folder per subset, each with ``train.jsonl.gz`` and ``test.jsonl.gz``
    of ``{"chosen", "rejected"}`` transcripts. Its id alone names the subsets to choose from; a subset's
    file is fetched and trains on its chosen conversations."""
    from convo.data import load_examples

    good = ROOT / "tests" / "data" / "good"
    packed = (good / "preference_hh.jsonl.gz").read_bytes()
    hub.add_repo("anthropic/hh-rlhf", {f"{subset}/{split}.jsonl.gz": packed for subset in ("harmless-base", "helpful-base")
                                       for split in ("train", "test")}, repo_type="dataset")
    with pytest.raises(HubError) as several:
        hub_data.dataset_files("anthropic/hh-rlhf")
    assert str(several.value) == ("The dataset anthropic/hh-rlhf has 2 splits for its train split (harmless-base/"
                                  "train.jsonl.gz (1 file), helpful-base/train.jsonl.gz (1 file)): name one, as "
                                  "anthropic/hh-rlhf/harmless-base/train.jsonl.gz.")
    fetched = hub_data.dataset_files("anthropic/hh-rlhf/helpful-base/train.jsonl.gz")
    assert fetched.train.read_bytes() == packed and fetched.validation is None
    examples, report = load_examples(fetched.train, None)
    assert report.format == "preference" and len(examples) == 3 and examples[1][-1]["content"].startswith("Try Outfoxed!")


def test_a_private_datasets_file_is_fetched_with_the_token_and_the_token_is_written_nowhere(hub, fetch_tmp,
                                                                                            monkeypatch, caplog):
    monkeypatch.setattr(constants, "HF_DEBUG", True)  # huggingface_hub then logs every request as curl
    caplog.set_level(logging.DEBUG)
    data = (ROOT / "tests" / "data" / "good" / "coqa_hf.parquet").read_bytes()
    hub.add_repo("alice/private-coqa", {"data/train-00000-of-00001.parquet": data}, repo_type="dataset", private=True)
    with pytest.raises(HubError, match="^Repository alice/private-coqa was not found on the Hub"):
        hub_data.dataset_files("alice/private-coqa")
    path = hub_data.dataset_files("alice/private-coqa", token=TOKEN).train
    assert path.read_bytes() == data
    assert [r.token for r in hub.requests if r.path.startswith("/api/datasets/alice/private-coqa")][-1] == TOKEN
    written = [f for f in fetch_tmp.rglob("*") if f.is_file()]
    assert len(written) >= 2 and not [f for f in written if TOKEN.encode() in f.read_bytes()]  # the file, its metadata
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("source, message", [
    ("stanfordnlp/coqa", "stanfordnlp/coqa/data/train-00000-of-00001.parquet is 0.0 MB, over the 0 MB limit of the "
                         "app: download it and train from the command line, which reads files of any size "
                         "(python -m training.finetune --train_data FILE)."),
    ("alice/shards", "The dataset alice/shards has 2 splits for its train split (plain/train (2 files), plain/"
                     "train_gen.jsonl (1 file)): name one, as alice/shards/plain/train."),
    ("alice/shards/plain/train", "alice/shards/plain/train (2 files) is 0.0 MB, over the 0 MB limit of the app: "
                                 "download it and train from the command line, which reads files of any size "
                                 "(python -m training.finetune --train_data FILE)."),
    ("alice/json-shards", "The dataset alice/json-shards has 2 files for its train split (train-00000-of-00002.json.gz, "
                          "train-00001-of-00002.json.gz), and only files of one kind are joined (gzipped JSON files are "
                          "not): name one, as alice/json-shards/train-00000-of-00002.json.gz."),
    ("alice/two", "The dataset alice/two has 2 data files and none named train (a.jsonl, b.jsonl): name one, as "
                  "alice/two/a.jsonl."),
    ("alice/images", "The dataset alice/images has no .parquet, .arrow, .jsonl, .json, .csv or .tsv (also gzipped) "
                     "file."),
    ("alice/images/cat.png", "cat.png is not a data file training reads: name a .parquet, .arrow, .jsonl, .json, .csv or "
                             ".tsv (also gzipped) file."),
    ("stanfordnlp/coqa/data/test.parquet", "The dataset stanfordnlp/coqa has no file data/test.parquet."),
    ("alice/nothing", "Repository alice/nothing was not found on the Hub (or it is private and this token cannot "
                      "read it)."),
    ("coqa", "'coqa' is not a dataset's id: expected owner/name, such as stanfordnlp/coqa or rajpurkar/squad."),
    ("a/b c", "Invalid repo id 'a/b c': expected 'user/name'."),
    (" ", "Type a dataset's id, such as stanfordnlp/coqa, or the address of one of its files."),
])
def test_a_hub_dataset_that_gives_no_one_training_file_says_why(hub, source, message):
    hub.add_repo("stanfordnlp/coqa", {"data/train-00000-of-00001.parquet": b"PAR1" + bytes(40) + b"PAR1"},
                 repo_type="dataset")
    hub.add_repo("alice/shards", {**{f"plain/train-0000{n}-of-00002.parquet": b"PAR1" * 2 for n in (0, 1)},
                                  "plain/train_gen.jsonl": "{}"}, repo_type="dataset")
    hub.add_repo("alice/json-shards", {f"train-0000{n}-of-00002.json.gz": "[]" for n in (0, 1)}, repo_type="dataset")
    hub.add_repo("alice/two", {"a.jsonl": "{}", "b.jsonl": "{}"}, repo_type="dataset")
    hub.add_repo("alice/images", {"cat.png": b"png", "README.md": "cats"}, repo_type="dataset")
    with pytest.raises(HubError) as error:
        hub_data.dataset_files(source, max_bytes=10)
    assert str(error.value) == message


# --------------------------------------------------------------------------- tokens and errors


def test_token_never_leaks_into_files_logs_or_cards(hub, adapter_dir, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(constants, "HF_DEBUG", True)  # huggingface_hub then logs every request as curl
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    data = tmp_path / "talks.jsonl"
    data.write_text('{"messages": []}\n')

    push_adapter(adapter_dir, "alice/curious", token=TOKEN)
    push_dataset([data], "alice/talks", token=TOKEN,
                 card=dataset_card(repo_id="alice/talks", config={"hf_token": TOKEN}, counts={}))
    assert list_adapters(TOKEN) == ["alice/curious"]
    download_adapter("alice/curious", token=TOKEN)
    with pytest.raises(HubError) as err:
        push_adapter(adapter_dir, "bob/curious", token=TOKEN)

    assert TOKEN not in str(err.value)
    assert "curl" in caplog.text and "authenticated: True" in caplog.text  # the logs were really captured
    assert TOKEN not in caplog.text
    assert TOKEN not in _card()
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == []
    assert len(list(tmp_path.rglob("*"))) > 20  # the scan did look at the mirror, the cache and the run


@pytest.mark.parametrize("token", [None, "", "   "])
def test_no_token_asks_to_sign_in(hub, adapter_dir, tmp_path, token):
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    calls = [
        lambda: push_adapter(adapter_dir, "alice/curious", token=token),
        lambda: push_dataset([data], "alice/talks", token=token, card="# c\n"),
        lambda: whoami(token),
        lambda: list_adapters(token),
    ]
    for call in calls:
        with pytest.raises(HubError) as err:
            call()
        assert str(err.value) == SIGN_IN_HELP
    assert hub.requests == []


def test_wrong_token_is_rejected_with_401(hub, adapter_dir):
    expected = "The Hugging Face token was rejected (401): check that it is complete, current and not revoked."
    for call in (lambda: whoami(WRONG_TOKEN), lambda: push_adapter(adapter_dir, "alice/curious", token=WRONG_TOKEN),
                 lambda: list_adapters(WRONG_TOKEN)):
        with pytest.raises(HubError) as err:
            call()
        assert str(err.value) == expected
    assert hub.repo("alice/curious") is None


def test_other_namespace_is_refused_with_403(hub, adapter_dir):
    hub.add_repo("bob/existing", {"adapter_config.json": "{}"})
    for repo_id, token in (("bob/curious", TOKEN), ("bob/existing", TOKEN), ("alice/curious", READ_TOKEN)):
        with pytest.raises(HubError) as err:
            push_adapter(adapter_dir, repo_id, token=token)
        assert str(err.value) == (
            f"No permission to write to {repo_id} (403): use a token with write access to that namespace."
        )
    assert hub.repo("bob/curious") is None
    assert set(hub.files("bob/existing")) == {"adapter_config.json"}


def test_unreachable_hub_fails_fast_with_a_network_message(monkeypatch, adapter_dir, tmp_path):
    endpoint = _closed_port_url()
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    expected = f"Cannot reach the Hugging Face Hub at {endpoint}: check the network connection."
    for call in (lambda: push_adapter(adapter_dir, "alice/curious", token=TOKEN), lambda: whoami(TOKEN),
                 lambda: list_adapters(TOKEN), lambda: download_adapter("alice/curious", token=TOKEN)):
        started = time.monotonic()
        with pytest.raises(HubError) as err:
            call()
        assert str(err.value) == expected
        assert time.monotonic() - started < 5


def test_offline_mode_is_respected(hub, adapter_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError) as err:
        push_adapter(adapter_dir, "alice/curious", token=TOKEN)
    assert str(err.value) == (
        f"Cannot reach the Hugging Face Hub at {hub.url}: check the network connection. (HF_HUB_OFFLINE is set)"
    )
    assert hub.requests == []


@pytest.mark.parametrize("repo_id", ["noslash", "a/b/c", "", "/name", "-bad/x", "al ice/x", "a--b/x", "user/na..me"])
def test_invalid_repo_id(hub, adapter_dir, repo_id):
    with pytest.raises(HubError) as err:
        push_adapter(adapter_dir, repo_id, token=TOKEN)
    assert str(err.value) == f"Invalid repo id '{repo_id}': expected 'user/name'."
    with pytest.raises(HubError):
        download_adapter(repo_id)
    assert hub.requests == []


def test_resolve_token_precedence(monkeypatch):
    class OAuthToken:  # the shape of gradio's gr.OAuthToken
        token = "hf_oauth_for_tests"

    monkeypatch.setenv("HF_TOKEN", "hf_env_for_tests")
    assert resolve_token("  hf_pasted_for_tests \n", OAuthToken()) == "hf_pasted_for_tests"
    assert resolve_token("   ", OAuthToken()) == "hf_oauth_for_tests"
    assert resolve_token(None, None) == "hf_env_for_tests"
    monkeypatch.delenv("HF_TOKEN")
    assert resolve_token(None, None) is None
    assert resolve_token("", object()) is None


def test_endpoint_is_read_at_call_time(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/")
    assert convo_hub.hub_endpoint() == "http://127.0.0.1:9"
    monkeypatch.delenv("HF_ENDPOINT")
    assert convo_hub.hub_endpoint() == "https://huggingface.co"


# --------------------------------------------------------------------------- cards


def test_adapter_card_header_body_and_tables():
    card = _card()
    meta = card_metadata(card.encode())
    assert meta == {
        "library_name": "peft",
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "tags": ["convo", "lora"],
        "pipeline_tag": "text-generation",
    }
    assert 'PeftModel.from_pretrained(base, "alice/curious")' in card
    assert 'ConversationModel.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct", adapter="alice/curious")' in card
    assert "| lora_alpha | 16 |" in card and "| learning_rate | 0.0002 |" in card
    assert "| eval_loss | 1.5 |" in card and "| examples | 120 |" in card
    assert "`coqa_small.json`" in card and "ab" * 32 in card
    assert "hf_token" not in card and TOKEN not in card


def test_adapter_card_with_a_local_base_model_has_no_base_model_field():
    card = adapter_card(repo_id="alice/a", base_model="/models/base", data_file_name="d.json", data_sha256="0",
                        counts={}, hyperparameters={}, metrics={})
    assert "base_model" not in card_metadata(card.encode())
    assert "No metrics recorded." in card


def test_cards_refuse_token_shaped_values():
    with pytest.raises(HubError, match=r"^Refusing to write a card with something shaped like a Hugging Face token"):
        adapter_card(repo_id="alice/a", base_model="x/y", data_file_name="d", data_sha256="0", counts={},
                     hyperparameters={"note": "hf_sneaky_value"}, metrics={})
    with pytest.raises(HubError):
        dataset_card(repo_id="alice/d", config={"prompt_lines": ["use hf_abc_def"]}, counts={})
    card = dataset_card(repo_id="alice/d", config={"HF_TOKEN": TOKEN, "apiKey": "k", "max_new_tokens": 64}, counts={})
    assert '"max_new_tokens": 64' in card and "apiKey" not in card and TOKEN not in card


# --------------------------------------------------------------------------- the Space


def test_space_readme_is_a_valid_space_card():
    text = (ROOT / "spaces" / "README.md").read_text()
    meta = card_metadata(text.encode())
    for key in ("title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "app_file", "python_version",
                "hf_oauth", "hf_oauth_scopes", "suggested_hardware", "license"):
        assert key in meta, key
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == "6.31.0" and meta["app_file"] == "app.py"
    assert meta["python_version"] == "3.11" and meta["license"] == "apache-2.0" and meta["hf_oauth"] is True
    assert meta["hf_oauth_scopes"] == ["read-repos", "write-repos", "manage-repos", "inference-api"]
    colors = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert meta["colorFrom"] in colors and meta["colorTo"] in colors
    assert len(meta.get("short_description", "")) <= 60
    assert "/data" in text and "python -m spaces.publish" in text


def _fake_checkout(root: Path) -> Path:
    for path, text in {
        "app.py": "import convo\n",
        "requirements.txt": "gradio==6.31.0\n",
        "convo/__init__.py": "",
        "convo/hub.py": "# hub\n",
        "convo/ui/__init__.py": "",
        "convo/ui/chat.py": "# chat tab\n",
        "convo/__pycache__/hub.cpython-311.pyc": "bytecode",
        "convo/notes.txt": "not python",
        "tests/test_x.py": "def test(): pass\n",
        "spaces/README.md": (ROOT / "spaces" / "README.md").read_text(),
        "spaces/publish.py": "# publisher\n",
        "training/finetune.py": "# cli\n",
        ".env": f"HF_TOKEN={TOKEN}\n",
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


SPACE_UPLOADS = ["README.md", "app.py", "convo/__init__.py", "convo/hub.py", "convo/ui/__init__.py",
                 "convo/ui/chat.py", "requirements.txt"]


def test_space_files_is_exactly_what_a_space_needs(tmp_path):
    root = _fake_checkout(tmp_path / "checkout")
    files = space_publish.space_files(root)
    assert list(files) == SPACE_UPLOADS
    assert files["README.md"] == root / "spaces" / "README.md"
    (root / "requirements.txt").unlink()
    with pytest.raises(HubError, match=r"^Cannot publish the Space: missing requirements\.txt under "):
        space_publish.space_files(root)


def test_publish_uploads_the_exact_file_list(hub, tmp_path, monkeypatch, capsys):
    root = _fake_checkout(tmp_path / "checkout")
    monkeypatch.setenv("HF_TOKEN", TOKEN)

    assert space_publish.main(["alice/convo", "--private", "--root", str(root)]) == 0

    out = capsys.readouterr()
    assert out.out.strip() == f"Published {len(SPACE_UPLOADS)} files to {hub.url}/spaces/alice/convo"
    assert TOKEN not in out.out + out.err
    repo = hub.repo("alice/convo", "space")
    assert repo.sdk == "gradio" and repo.private is True
    assert sorted(hub.files("alice/convo", "space")) == sorted(SPACE_UPLOADS + [".gitattributes"])
    assert hub.files("alice/convo", "space")["README.md"] == (root / "spaces" / "README.md").read_bytes()


def test_publish_without_token(hub, tmp_path, capsys):
    root = _fake_checkout(tmp_path / "checkout")
    assert space_publish.main(["alice/convo", "--root", str(root)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {SIGN_IN_HELP}"
    assert hub.requests == []


def test_repo_ids_and_cards_follow_huggingface_hub_rules():
    """The repo-id check is huggingface_hub's (plus a namespace); the cards parse as its card classes."""
    from huggingface_hub import DatasetCard, ModelCard

    for bad in ("a/b.git", "a--b/c", "name-only", "a/.x"):
        with pytest.raises(convo_hub.HubError, match="expected 'user/name'"):
            convo_hub.validate_repo_id(bad)
    assert convo_hub.validate_repo_id(" alice/curious.v2 ") == "alice/curious.v2"
    model = ModelCard(adapter_card(repo_id="alice/a", base_model="org/base", data_file_name="d.json",
                                       data_sha256="0", counts={}, hyperparameters={}, metrics={}))
    assert model.data.base_model == "org/base" and model.data.library_name == "peft"
    dataset = DatasetCard(dataset_card(repo_id="alice/d", config={"hf_token": "x", "n": 1}, counts={"kept": 2}))
    assert dataset.data.pretty_name == "d" and "hf_token" not in dataset.content
