"""``python -m convo questions``: questions about a passage, one JSON object per line."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..engine import ModelLoadError
from ..engine.remote import RemoteError
from ..questions import (DEFAULT_N, MAX_PASSAGE_BYTES, MODES, QG_SAMPLING, STYLES, Question, QuestionError, QuestionSettings,
                         check_size, decode_passage, question_run, read_passage)
from ..settings import QUANTIZE_CHOICES, ModelSpec, Sampling, default_model_name


def register_cli(subparsers) -> None:
    """Add ``questions`` to ``python -m convo``'s subcommands."""
    parser = subparsers.add_parser("questions", help="generate questions about a passage (JSON lines)",
                                   description="Generate questions about a passage; prints one JSON object per line.")
    add_arguments(parser)
    parser.set_defaults(func=run_cli)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--file", default="-", help="passage file (.txt, .md, .html, .pdf or .docx); '-' or absent reads stdin")
    parser.add_argument("-n", type=int, default=DEFAULT_N, help="number of questions (default %(default)s)")
    parser.add_argument("--model", default=None, help="'bundled', a Hub id, a local folder, remote:<endpoint> or hf:<id> (default: $CONVO_MODEL or bundled)")
    parser.add_argument("--adapter", default=None, help="LoRA adapter folder or Hub id")
    parser.add_argument("--quantize", default=ModelSpec.quantize, choices=QUANTIZE_CHOICES)
    parser.add_argument("--mode", default=None, choices=MODES,
                        help="open (default), answer (needs --answer) or conversational (uses --history)")
    parser.add_argument("--answer", default=None, help="answer span the questions should target")
    parser.add_argument("--history", default=None,
                        help="JSON file of earlier turns [{\"question\", \"answer\"}] for conversational mode")
    parser.add_argument("--style", default=QuestionSettings.style, choices=STYLES, help="prompt style (default: picked per model)")
    parser.add_argument("--allow-yes-no", action="store_true", help="keep questions a bare yes/no answers")
    parser.add_argument("--candidates", type=int, default=QuestionSettings.candidates, help="model samples to draw (0 = max(8, 2n))")
    parser.add_argument("--seed", type=int, default=None, help="random seed for reproducible sampling")
    parser.add_argument("--dropped", action="store_true", help="also print dropped candidates (\"kept\": false)")


def run_cli(args) -> int:
    """Run ``questions`` from parsed arguments; returns the exit code (2 for bad input)."""

    try:
        passage = read_passage_arg(args.file)
        mode = args.mode or ("answer" if args.answer else "open")
        if mode == "answer" and not (args.answer and args.answer.strip()):
            raise QuestionError("--mode answer needs --answer TEXT.")
        history = _read_history(args.history) if mode == "conversational" else None
        settings = QuestionSettings(open_only=not args.allow_yes_no, candidates=args.candidates, style=args.style,
                                    sampling=Sampling(**{**QG_SAMPLING.to_dict(), "seed": args.seed}))
        spec = ModelSpec(args.model or _default_model(), adapter=args.adapter, quantize=args.quantize)
        run = question_run(passage, args.n, spec, args.answer if mode == "answer" else None, history, settings)
    except (QuestionError, ModelLoadError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RemoteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for q in run.questions + (run.dropped if args.dropped else []):
        print(json.dumps(_cli_record(q, passage), ensure_ascii=False))
    return 0


def _default_model() -> str:
    return default_model_name()


def _cli_record(q: Question, passage: str) -> dict:
    return {"text": q.text, "score": q.score, "parts": q.parts, "span": list(q.span),
            "sentence": passage[q.span[0]:q.span[1]], "source": q.source, "chunk": q.chunk,
            "kept": q.kept, "reasons": list(q.reasons)}


def read_passage_arg(path: str | None) -> str:
    """The passage from a file path, or from stdin for ``-``/None."""
    if path in (None, "-"):
        return decode_passage(sys.stdin.buffer.read(MAX_PASSAGE_BYTES + 1), "stdin")
    file = Path(path)
    if file.is_dir():
        raise QuestionError(f"{path} is a folder: give the passage's file.")
    if not file.is_file():
        raise QuestionError(f"{path}: no such file.")
    check_size(file.stat().st_size, file.name)
    return read_passage(file.read_bytes(), file.name)


def _read_history(path: str | None) -> list:
    if not path:
        return []
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuestionError(f"{path}: cannot read the history JSON ({exc}).") from None
    if not isinstance(data, list):
        raise QuestionError(f"{path}: expected a JSON list of {{\"question\", \"answer\"}} objects.")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m convo.questions ...`` (the same as ``python -m convo questions ...``)."""
    parser = argparse.ArgumentParser(prog="python -m convo.questions", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
