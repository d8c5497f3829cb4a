"""convo's web app: ``python app.py`` serves it at http://127.0.0.1:7860 (on a Space, 0.0.0.0).

The app is built in convo.ui; this file only launches it, so a Space and a local run are the same.
"""
from convo.ui import main

if __name__ == "__main__":
    main()
