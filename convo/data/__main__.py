"""``python -m convo.data FILE``: the same as ``python -m convo data FILE`` (see convo.cli.data)."""
import sys

from convo.cli.data import main

if __name__ == "__main__":
    sys.exit(main())
