"""Cold and warm start of ``python app.py`` to ready (answering HTTP) on the bundled model.
Cold = an empty convo cache (the GGUF is converted); warm = the second start.

    python benchmarks/startup.py
"""
from __future__ import annotations

import argparse
import tempfile
import time

from common import App, machine


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help says what it does, runs nothing
    print(machine())
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as data:
        env = {"CONVO_CACHE_DIR": cache, "CONVO_DATA_DIR": data}
        for label in ("cold", "warm"):
            started = time.monotonic()
            app = App(env)
            from gradio_client import Client

            client = Client(app.url, verbose=False)
            model, *_rest, status = client.predict("bundled", "(none)", "auto", api_name="/load_model")
            loaded = time.monotonic() - started
            print(f"{label}: server ready {app.ready_s:5.1f} s, model loaded {loaded:5.1f} s ({status.strip()})")
            app.stop()


if __name__ == "__main__":
    main()
