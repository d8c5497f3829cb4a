"""``python -m convo.synth ...``: the same as ``python -m convo synth ...`` (see convo.cli.synth)."""
import sys

from convo.cli.synth import main

if __name__ == "__main__":
    sys.exit(main())
