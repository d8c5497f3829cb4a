"""``python -m convo ...``: see convo.cli."""
import sys

from convo.cli import main

if __name__ == "__main__":
    sys.exit(main())
