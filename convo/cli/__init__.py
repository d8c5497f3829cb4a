"""convo's command line: ``python -m convo chat|questions|synth|train|data|app`` (also the ``convo`` script).

One small module per command, each generated from its feature's config dataclass (the defaults are
read from there); this package only parses and dispatches. Signal handling lives here, not in the core.
"""
from __future__ import annotations

import argparse

from . import chat, data, questions, synth, train


def run_app(args) -> int:
    from ..ui import main

    main()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convo", description=__doc__.splitlines()[0].replace("``", ""))  # (reST's quotes are no help in a terminal)
    sub = parser.add_subparsers(dest="command", required=True)
    chat.register_cli(sub)
    sub.add_parser("app", help="start the web app").set_defaults(func=run_app)
    for module in (questions, synth, train, data):
        module.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
