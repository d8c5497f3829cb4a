"""benchmarks/question_quality.py end to end on the tiny model: split, measure, train through the
job path, measure with the adapter, print both side by side."""
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
sys.path.insert(0, str(Path(__file__).parent / "data"))

import question_quality as qq  # noqa: E402
from make_coqa import write_coqa  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_metrics_on_fixed_examples():
    assert qq.distinct_2(["what is it?", "what is it?"]) == 0.5
    assert qq.best_match("Where did Anna live?", ["Who is Tom?", "where did anna live?"]) == (1.0, "where did anna live?")
    train, held = qq.split_passages(list(range(10)), 3, seed=0)
    assert len(held) == 3 and sorted(train + held) == list(range(10))
    assert qq.split_passages(list(range(10)), 3, seed=0) == (train, held)  # seeded


def test_benchmark_runs_end_to_end_on_the_tiny_model(tiny_causal, tmp_path):
    data = tmp_path / "coqa.json"
    write_coqa(data, n=8, seed=1)
    out = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, "benchmarks/question_quality.py", "--data", str(data), "--model", tiny_causal,
                             "--heldout", "2", "-n", "2", "--steps", "2", "--batch-size", "2", "--max-length", "256",
                             "--work", str(tmp_path / "work"), "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "best-match ROUGE-L" in result.stdout and "adapter" in result.stdout
    figures = json.loads(out.read_text())
    for side in ("base", "adapter"):
        assert figures[side]["passages"] == 2
        assert 0 <= figures[side]["rouge_l"] <= 1 and 0 <= figures[side]["pass_rate"] <= 1
        assert figures[side]["human_words"] > 0
    assert (tmp_path / "work" / "adapter" / "adapter_config.json").is_file()
    assert len(json.loads((tmp_path / "work" / "train.json").read_text())) == 6


def test_grounding_matches_possessives_and_verb_forms():
    """CoQA-style questions ("What was Mei's job?", "Where did she live?") ground in their story;
    they used to score 0 and be dropped as "not about the passage"."""
    from convo import questions as qg

    story = "Mei was a nurse who lived in Kelso. She was helping at the market."
    assert qg.grounding("What was Mei's job?", story) == 0.5
    assert qg.grounding("Where did she live?", story) == 1.0
    assert qg.grounding("Who helped?", story) == 1.0
    assert qg.grounding("When was the volcano built?", story) == 0.0


def test_real_benchmark_data_loads():
    """benchmarks/data/squad_dev_sample.json: real SQuAD v1.1 dev passages, in the simplified CoQA format."""
    from convo.data import load_data

    passages, _ = load_data(str(ROOT / "benchmarks" / "data" / "squad_dev_sample.json"), task="qg")
    assert len(passages) == 39 and sum(len(p.turns) for p in passages) == 175
    assert all(t.answer and t.answer.rstrip(".,") in p.context for p in passages for t in p.turns)
