"""``python -m convo data FILE`` (or ``python -m convo.data FILE``): check a training data file and print
its report; exit status 1 when it is rejected."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..data import TASKS, validate_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file")
    parser.add_argument("--task", choices=TASKS)


def run_cli(args: argparse.Namespace) -> int:
    report = validate_file(args.file, task=args.task, max_bytes=None)  # a file on this machine: no upload caps
    print(report.summary())
    return 0 if report.ok else 1


def register_cli(subparsers) -> None:
    """Add ``data`` to ``python -m convo``."""
    parser = subparsers.add_parser("data", help="check a training data file and print its report")
    add_arguments(parser)
    parser.set_defaults(func=run_cli)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convo.data", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
