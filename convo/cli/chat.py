"""``python -m convo chat``: chat in the terminal on the app's engine, with the same curious questions."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from ..settings import BUNDLED, QUANTIZE_CHOICES, ChatSettings, ModelSpec, Sampling, default_model_name, model_sampling


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help=f"'{BUNDLED}' (default), a Hub id, a local folder, remote:<declared endpoint> or hf:<model id>[:provider]")
    parser.add_argument("--adapter", default=None, help="LoRA adapter folder or Hub id")
    parser.add_argument("--quantize", default=ModelSpec.quantize, choices=QUANTIZE_CHOICES)


def run_chat(args) -> int:
    """Interactive terminal chat on the app's engine, with the same curious questions."""
    from .. import chat
    from ..engine.generation import Stop
    from ..engine import ModelLoadError, get_model
    from ..engine.remote import RemoteError

    try:
        lm = get_model(ModelSpec(args.model or default_model_name(), adapter=args.adapter, quantize=args.quantize))
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = ChatSettings(system_prompt=args.system or ChatSettings().system_prompt, interviewer=args.interviewer)
    given = {k: v for k, v in (("temperature", args.temperature), ("max_new_tokens", args.max_new_tokens),
                               ("seed", args.seed)) if v is not None}
    sampling = replace(model_sampling(lm.spec.name), **given)  # the model's own defaults, as the app's
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"convo chat with {lm.spec.label} - Ctrl-D to quit", file=sys.stderr)
    history: list[dict] = []
    asked: list[str] = []
    while True:
        if interactive:
            print("you> ", end="", flush=True, file=sys.stderr)
        line = sys.stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        history.append({"role": "user", "content": line.strip()})
        printed = ""
        stop = Stop()
        try:
            for text in chat.reply_stream(lm, history, settings, sampling, stop, asked=asked):
                sys.stdout.write(text[len(printed):] if text.startswith(printed) else "\n" + text)
                sys.stdout.flush()
                printed = text
        except KeyboardInterrupt:
            stop.set()
        except RemoteError as exc:  # the server went away: say so in one line, keep the chat going
            print(f"\nerror: {exc}", file=sys.stderr)
            history.pop()
            continue
        print()
        history.append({"role": "assistant", "content": printed})
        asked += chat.asked_questions(history[-1:])
        if not args.no_questions:
            questions = chat.follow_up_questions(lm, history, n=args.questions, asked=asked)
            for q in questions:
                print(f"  ? {q.text}")
            asked += [q.text for q in questions]
    return 0


def register_cli(sub) -> None:
    """Add ``chat`` to ``python -m convo``."""
    chat_parser = sub.add_parser("chat", help="chat in the terminal (reads stdin; Ctrl-D ends)")
    add_model_args(chat_parser)
    chat_parser.add_argument("--system", default=None, help="system prompt")
    chat_parser.add_argument("--temperature", type=float, default=None,
                             help="(default: the model's recommended one; the bundled model's is 0.2)")
    chat_parser.add_argument("--max-new-tokens", type=int, default=Sampling.max_new_tokens, help="(default: %(default)s)")
    chat_parser.add_argument("--seed", type=int, default=Sampling.seed)
    chat_parser.add_argument("--questions", type=int, default=ChatSettings.n_questions,
                             help="follow-up questions to suggest (default: %(default)s)")
    chat_parser.add_argument("--no-questions", action="store_true", help="no follow-up questions")
    chat_parser.add_argument("--interviewer", action="store_true", default=ChatSettings.interviewer,
                             help="end each reply with a question")
    chat_parser.set_defaults(func=run_chat)
