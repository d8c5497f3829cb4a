"""Publish convo as a Hugging Face Space (Gradio SDK), uploading exactly the files the Space needs.

Run from the repository root: ``python -m spaces.publish <user/space> [--private] [--token T]``
(the token comes from ``--token`` or ``$HF_TOKEN`` and is never printed). ``space_files()`` lists the upload.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from convo.hub import HubError, upload_files

REPO_ROOT = Path(__file__).resolve().parent.parent

# What a Space needs, as (path in the Space, pattern under the repository root). The convo package is
# listed by pattern so new modules are picked up without editing this file.
SPACE_FILES: tuple[tuple[str, str], ...] = (
    ("app.py", "app.py"),
    ("requirements.txt", "requirements.txt"),
    ("convo/**/*.py", "convo/**/*.py"),
    ("README.md", "spaces/README.md"),  # the Space card, uploaded as the Space's README.md
)
REQUIRED = ("app.py", "requirements.txt", "README.md")


def space_files(root: str | Path = REPO_ROOT) -> dict[str, Path]:
    """The files to upload, as ``{path in the Space: local path}``, sorted by path in the Space.

    Raises :class:`HubError` naming any required file (app.py, requirements.txt, spaces/README.md) that is missing.
    """
    root = Path(root)
    files: dict[str, Path] = {}
    for target, pattern in SPACE_FILES:
        if "*" in pattern:
            for path in root.glob(pattern):
                if path.is_file() and "__pycache__" not in path.parts:
                    files[path.relative_to(root).as_posix()] = path
        elif (root / pattern).is_file():
            files[target] = root / pattern
    missing = [dict(SPACE_FILES)[name] for name in REQUIRED if name not in files]
    if missing:
        raise HubError(f"Cannot publish the Space: missing {', '.join(missing)} under {root}.")
    return dict(sorted(files.items()))


def publish(space_id: str, *, token: str | None, private: bool = False, root: str | Path = REPO_ROOT) -> str:
    """Create (or update) the Gradio Space ``space_id`` with :func:`space_files`; return its URL."""
    return upload_files(
        space_id,
        space_files(root),
        token=token,
        repo_type="space",
        private=private,
        space_sdk="gradio",
        commit_message="Publish convo Space",
    )


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m spaces.publish", description=__doc__.splitlines()[0])
    parser.add_argument("space_id", help="the Space to create or update, as user/space")
    parser.add_argument("--private", action="store_true", help="create the Space as private")
    parser.add_argument("--token", default=None, help="a Hugging Face token with write access (default: $HF_TOKEN)")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the checkout to publish (default: this one)")
    args = parser.parse_args(argv)
    token = (args.token or os.environ.get("HF_TOKEN") or "").strip() or None
    try:
        files = space_files(args.root)
        url = publish(args.space_id, token=token, private=args.private, root=args.root)
    except HubError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Published {len(files)} files to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
