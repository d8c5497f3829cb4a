"""The operator's view of every training job (Fine-tune > "All jobs (operator)").

The operator is a signed-in Hub user listed in ``CONVO_OPERATORS``, or a page unlocked with
``CONVO_OPERATOR_KEY`` (convo.ui.common.is_operator); everyone else sees only their own jobs.
"""
from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import pandas as pd

from .. import jobs
from .common import is_operator, operator_key_matches

LIVE_STATES = ("queued", "running")
COLUMNS = ["job id", "state", "owner", "step", "started"]
NOT_OPERATOR = ("Only the operator sees all jobs: sign in with a Hub account listed in `CONVO_OPERATORS`, or enter "
                "the key set in `CONVO_OPERATOR_KEY`.")


def owner_label(owner: str) -> str:
    """An owner as the operator reads it: the Hub name, or a short mark of the browser (never the
    whole browser id: it is that browser's claim to its jobs)."""
    kind, _, name = owner.partition(":")
    return name if kind == "hf" else f"browser {name[:6]}"


def jobs_frame() -> pd.DataFrame:
    """Every job of this app, newest first: id, state, owners, step, start time."""
    rows = []
    for job in jobs.all_jobs():
        status = jobs.read_status(job)
        owners = ", ".join(owner_label(o) for o in jobs.job_owners(job)) or "(nobody)"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(status["created"])) if status.get("created") else ""
        rows.append([job.name, jobs.job_state(job, status), owners,
                     f"{status.get('step', 0)}/{status['max_steps']}" if status.get("max_steps") else "starting",
                     started])
    return pd.DataFrame(rows, columns=COLUMNS)


def show_all_jobs(key, unlocked, profile: gr.OAuthProfile | None = None):
    """The operator's list of every job. A right key unlocks this page (a server-side gr.State, until
    it is reloaded); the key box is cleared either way, the key is kept nowhere."""
    refused = ""
    if key and not unlocked:
        unlocked = operator_key_matches(key)
        refused = "" if unlocked else "That is not the operator key. "
    if not is_operator(unlocked, profile):
        return (unlocked, "", pd.DataFrame(columns=COLUMNS), gr.update(choices=[], value=None),
                refused + NOT_OPERATOR)
    frame = jobs_frame()
    live = int(frame["state"].isin(LIVE_STATES).sum())
    return (unlocked, "", frame, gr.update(choices=list(frame["job id"])),
            f"{len(frame)} job{'s' * (len(frame) != 1)}, {live} queued or running.")


def operator_job(job_id, unlocked, profile=None) -> Path:
    """The job the operator picked, or a gr.Error for anyone else or for no pick."""
    if not is_operator(unlocked, profile):
        raise gr.Error(NOT_OPERATOR)
    job = jobs.find_job(job_id)
    if job is None:
        raise gr.Error("Pick a job from the list first.")
    return job


def cancel_as_operator(job_id, unlocked, profile: gr.OAuthProfile | None = None):
    """Cancel any job; the list is redrawn."""
    job = operator_job(job_id, unlocked, profile)
    return f"`{job.name}`: {jobs.cancel_job(job)}", jobs_frame()
