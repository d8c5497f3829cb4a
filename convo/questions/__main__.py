"""``python -m convo.questions ...``: the same as ``python -m convo questions ...`` (see convo.cli.questions)."""
import sys

from convo.cli.questions import main

if __name__ == "__main__":
    sys.exit(main())
