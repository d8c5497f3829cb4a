"""``python -m convo synth``: generate synthetic conversations from a keyword or persona config.

The flags' defaults come from convo.synth's job and sampling dataclasses; SIGINT/SIGTERM end a run
cleanly (finished lines are whole, a rerun resumes).
"""
from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from ..engine import ModelLoadError, get_model
from ..engine.generation import Stop
from ..engine.remote import RemoteError
from ..settings import DTYPE_CHOICES, QUANTIZE_CHOICES, ModelSpec, default_model_name
from ..synth import (KEYWORD_STRATEGIES, STRATEGIES, ConfigError, Interrupted, Job, KeywordJob, PersonaJob,
                     SynthSampling, _writing, default_sampling, load_keyword_config, load_persona_config,
                     read_seeds, run, write_flat_json)


def register_cli(subparsers) -> None:
    """Add ``synth`` to ``python -m convo``."""
    parser = subparsers.add_parser(
        "synth", help="generate synthetic conversations (keyword or persona mode)",
        description="Generate chat JSONL conversations. Keyword mode: --config keywords.json. Persona mode: "
                    "--personas personas.json --seeds seeds.txt. Reruns skip finished conversations.")
    add_arguments(parser)
    parser.set_defaults(func=cli)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags; every default is read from the job and sampling dataclasses (declared once there)."""
    source = parser.add_argument_group("what to generate")
    source.add_argument("--config", help="keyword config JSON (name, prompt_lines with {word}, words, exclude)")
    source.add_argument("--personas", help="persona experiment config JSON (llm, user_profiles)")
    source.add_argument("--seeds", help="seed messages: .txt (one per line), .csv, .jsonl, .json or .parquet")
    parser.add_argument("--out", required=True, help="output chat JSONL (appended to; reruns resume)")
    parser.add_argument("--model", help="model: 'bundled', a Hub id, a folder, remote:<endpoint> or hf:<id> (default: the config's, else $CONVO_MODEL or bundled)")
    parser.add_argument("--adapter", help="LoRA adapter folder or Hub id on top of the model")
    parser.add_argument("--quantize", default=ModelSpec.quantize, choices=QUANTIZE_CHOICES)
    parser.add_argument("--forever", action="store_true", help="keep generating new samples until interrupted")
    parser.add_argument("--n-per-word", type=int, default=KeywordJob.n_per_word,
                        help="keyword mode: conversations per word (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=PersonaJob.samples,
                        help="persona mode: conversations per seed and persona (default: %(default)s)")
    parser.add_argument("--roles", default=",".join(KeywordJob.roles), help="keyword mode: two speakers (default: %(default)s)")
    parser.add_argument("--turns", type=int, help="exchanges per conversation "
                        f"(default: {PersonaJob.turns} persona, {KeywordJob.turns} keyword)")
    parser.add_argument("--strategy", choices=sorted(set(STRATEGIES + KEYWORD_STRATEGIES)),
                        help=f"persona: {PersonaJob.strategy} (default) or script; keyword: {KeywordJob.strategy} (default) or script")
    parser.add_argument("--template", help="persona mode: generation template file (default: built in)")
    parser.add_argument("--restyle-template", help="persona mode: restyle template file ({message})")
    parser.add_argument("--max-attempts", type=int, help="generations per item before giving up "
                        f"(default: {PersonaJob.max_attempts} persona, {KeywordJob.max_attempts} keyword)")
    parser.add_argument("--batch-size", type=int, default=SynthSampling().batch_size,
                        help="conversations generated together (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=SynthSampling.max_new_tokens,
                        help="tokens per script (keyword/script) or per message (agents) (default: by strategy)")
    parser.add_argument("--temperature", type=float, default=SynthSampling.temperature,
                        help="0 = greedy (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=SynthSampling.seed, help="random seed for reproducible sampling")
    parser.add_argument("--dtype", default=ModelSpec.dtype, choices=DTYPE_CHOICES)
    parser.add_argument("--flat-json", help="also write the flat {conv, restyled_conv} JSON here at the end")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")


def job_from_args(args: argparse.Namespace) -> tuple[Job, str | None]:
    """The job an argparse namespace describes, and the model its config names (if any)."""
    if bool(args.config) == bool(args.personas):
        raise ConfigError("give either --config (keyword mode) or --personas with --seeds (persona mode)")
    if args.config:
        config = load_keyword_config(args.config)
        roles = tuple(r.strip() for r in args.roles.split(","))
        job = KeywordJob(config, roles=roles if len(roles) == 2 else ("", ""), n_per_word=args.n_per_word,
                         **_given(args, max_attempts="max_attempts", strategy="strategy", turns="turns"))
        return job, config.model
    if not args.seeds:
        raise ConfigError("persona mode needs --seeds (a .txt, .csv, .xlsx, .jsonl, .json, .parquet or .arrow file)")
    config = load_persona_config(args.personas)
    template = _read_text_arg(args.template, "--template") or config.template or ""
    restyle_template = _read_text_arg(args.restyle_template, "--restyle-template") or config.restyle_template or ""
    job = PersonaJob(read_seeds(args.seeds), config.personas, template=template, restyle_template=restyle_template,
                     samples=args.samples, **_given(args, max_attempts="max_attempts", strategy="strategy",
                                                    turns="turns"))
    return job, config.llm


def _given(args: argparse.Namespace, **names: str) -> dict:
    """Job keyword arguments for the options the user gave (the rest keep the job's defaults)."""
    return {field_name: getattr(args, arg) for field_name, arg in names.items() if getattr(args, arg) is not None}


def _read_text_arg(path: str | None, flag: str) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{flag}: cannot read {path} ({type(exc).__name__})") from None


def cli(args: argparse.Namespace) -> int:
    """Run ``synth`` from parsed arguments; returns the exit code (0 also after SIGINT/SIGTERM)."""

    try:
        if Path(args.out).is_dir():  # (IsADirectoryError's traceback came after the model had loaded)
            raise ConfigError(f"--out: {args.out} is a folder: give a file in it, e.g. {Path(args.out) / 'conversations.jsonl'}")
        job, config_model = job_from_args(args)
        sampling = default_sampling(job, args.max_new_tokens, temperature=args.temperature, seed=args.seed)
        spec = ModelSpec(args.model or config_model or default_model_name(),
                         adapter=args.adapter, quantize=args.quantize, dtype=args.dtype)
        lm = get_model(spec)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModelLoadError as exc:
        hint = "" if args.model else " (the model named in the config; pass --model to use another)"
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    stop = Stop()
    progress = None
    previous = _install_interrupt_handlers(stop)
    try:
        for progress in run(lm, job, args.out, sampling=sampling, batch_size=args.batch_size, stop=stop,
                            forever=args.forever):
            if not args.quiet and (progress.latest or progress.finished or progress.cancelled):
                print(progress.summary(), file=sys.stderr, flush=True)
    except Interrupted:
        print("interrupted: finished lines are saved; rerun to resume", file=sys.stderr)
    except RemoteError as exc:  # the server went away mid-run: what is written is whole
        print(f"error: {exc} Finished lines are saved; rerun the same command to resume.", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        _restore_handlers(previous)
    if args.flat_json:
        write_flat_json(args.out, args.flat_json)
    if progress is not None:
        print(f"{args.out}: {progress.kept} new conversations ({progress.summary()})")
    return 0  # also after an interrupt; the engine's worker is stopped cleanly at exit (fastpath.close_engines)


def _install_interrupt_handlers(stop: Stop) -> dict:
    """SIGINT/SIGTERM set ``stop`` and interrupt the generation in progress (lines are written whole)."""
    def handler(signum, frame):
        stop.set()
        if _writing.depth:
            _writing.pending = True
            return
        raise Interrupted()

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: no signal handling
            pass
    return previous


def _restore_handlers(previous: dict) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m convo.synth ...`` (the same arguments as ``python -m convo synth``)."""
    parser = argparse.ArgumentParser(prog="python -m convo.synth", description="Generate synthetic conversations.")
    add_arguments(parser)
    return cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
