"""Training jobs: a job is a folder, run by a subprocess, queued per device.

The Fine-tune tab creates a job folder (config.json, a FinetuneConfig) and starts
``python -m training.finetune --job_dir DIR`` as a child process, which reads that config.json;
the tab then only reads the folder (status, progress, samples) and asks for a stop. The flags of
``python -m training.finetune`` / ``python -m convo train`` live in convo.cli.train.

Why one module: the folder's files, the job states, the per-device queue and the owner checks are one
contract that the tab and the child process both read; split, the file names and state words would
be spread over modules that must change together.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .data import DataError
from .finetune import (EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, FinetuneConfig, StopFn, TrainResult,
                       TrainSettings, _check, checkpoint_step, last_checkpoint, process_rank, run_training, slug,
                       world_size)
from .settings import LoraSettings

# =========================================================================== jobs
#
# A job is a folder: config.json (a FinetuneConfig), status.json (state, pid, step, error,
# adapter, metrics), progress.jsonl (one log record per line), train.log (the child's output),
# samples.json and checkpoints/. The child process (python -m training.finetune --job_dir DIR)
# owns status.json once it runs; the UI only reads it, and asks for a stop with SIGTERM plus a
# "cancel" marker file.

QUEUE_POLL_S = 1.0


def jobs_dir() -> Path:
    """Where jobs live: ``data_dir()/jobs``."""
    from .store import data_dir

    return data_dir() / "jobs"


def new_job_dir() -> Path:
    folder = jobs_dir() / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:16]}"
    folder.mkdir(parents=True)
    return folder


def _write_json_atomic(path: Path, data: Any) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    os.replace(partial, path)


def read_status(job_dir: str | Path) -> dict:
    path = Path(job_dir) / "status.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_status(job_dir: str | Path, **changes) -> dict:
    """Merge ``changes`` into status.json (atomically) and return the new status."""
    status = {**read_status(job_dir), **changes, "updated": time.time()}
    _write_json_atomic(Path(job_dir) / "status.json", status)
    return status


def read_config(job_dir: str | Path) -> FinetuneConfig:
    path = Path(job_dir) / "config.json"
    _check(path.is_file(), f"{job_dir} is not a job folder: it has no config.json")
    return FinetuneConfig.from_dict(json.loads(path.read_text()))


def append_progress(job_dir: str | Path, record: dict) -> None:
    with open(Path(job_dir) / "progress.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def read_progress(job_dir: str | Path) -> list[dict]:
    """The job's log records in step order; a resumed run's records replace the earlier run's."""
    path = Path(job_dir) / "progress.jsonl"
    if not path.is_file():
        return []
    latest: dict[tuple[int, str], dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        latest[(record["step"], "eval" if "eval_loss" in record else "train")] = record
    return [latest[key] for key in sorted(latest)]


def _truncate_progress(job_dir: Path, last_step: int) -> None:
    # Steps logged after the checkpoint we resume from will be trained again: drop them.
    kept = [r for r in read_progress(job_dir) if r["step"] <= last_step]
    path = job_dir / "progress.jsonl"
    partial = path.with_name(".progress.tmp")
    partial.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(partial, path)


def _process_started(pid: int) -> float | None:
    import psutil

    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process.create_time()
    except psutil.Error:
        return None


def _alive(status: dict) -> bool:
    """Is the process that owns this job still running (and not a recycled pid)?"""
    pid = status.get("pid")
    if not pid:
        return False
    started = _process_started(pid)
    return started is not None and abs(started - status.get("pid_started", started)) < 1.0


def job_state(job_dir: str | Path, status: dict | None = None) -> str:
    """queued, running, finished, failed, cancelled, or ``died`` (killed or crashed: resumable)."""
    status = read_status(job_dir) if status is None else status
    state = status.get("state", "missing")
    if state in ("queued", "running") and not _alive(status):
        # A cancel that arrived before the child could catch it ends the process outright.
        return "cancelled" if (Path(job_dir) / "cancel").exists() else "died"
    return state


def _job_dirs() -> list[Path]:
    root = jobs_dir()
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def queue_position(job_dir: str | Path) -> int | None:
    """1 for the next job to start, 2 after it...; None when the job is not waiting."""
    job_dir = Path(job_dir)
    mine = read_status(job_dir)
    if job_state(job_dir, mine) != "queued":
        return None
    ahead = 0
    for other in _job_dirs():
        status = read_status(other)
        if other != job_dir and job_state(other, status) == "queued" and \
                status.get("created", 0) < mine.get("created", 0):
            ahead += 1
    return ahead + 1


def running_jobs() -> list[Path]:
    return [job for job in _job_dirs() if job_state(job) == "running"]


def waiting_for(job_dir: str | Path, owner: str | None = None) -> str:
    """What a queued job waits for, in words: the jobs running now and the queued ones ahead of it
    (named as ``owner``'s or another user's, never by their data or settings)."""
    running = []
    for job in running_jobs():
        status = read_status(job)
        whose = "your" if owner and owner in job_owners(job) else "another user's"
        running.append(f"{whose} job on {status.get('slot') or 'this device'} "
                       f"(step {status.get('step', 0)}/{status.get('max_steps') or '?'})")
    ahead = (queue_position(job_dir) or 1) - 1
    parts = running + ([f"{ahead} queued job{'s' * (ahead != 1)} ahead"] if ahead else [])
    return "waiting for " + " and ".join(parts) if parts else "waiting for a free device"


# ------------------------------------------------------------------ who may see a job

JOB_ID = r"\d{8}-\d{6}-[0-9a-f]{16}"


def job_owners(job_dir: str | Path) -> list[str]:
    """Who may see and control the job: signed-in users (``hf:<name>``) and browsers (``browser:<id>``)."""
    try:
        owners = json.loads((Path(job_dir) / "owners.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return [o for o in owners if isinstance(o, str)] if isinstance(owners, list) else []


def add_owner(job_dir: str | Path, owner: str) -> None:
    """Let ``owner`` see and control the job (the one who started it, or who reclaimed it by its id)."""
    owners = job_owners(job_dir)
    if owner and owner not in owners:
        _write_json_atomic(Path(job_dir) / "owners.json", owners + [owner])


def owned_jobs(owner: str | None) -> list[Path]:
    """The jobs ``owner`` may see, newest first."""
    if not owner:
        return []
    mine = [job for job in _job_dirs() if owner in job_owners(job)]
    return sorted(mine, key=lambda job: read_status(job).get("created", 0), reverse=True)


def all_jobs() -> list[Path]:
    """Every job of this app, newest first (the operator's view)."""
    return sorted(_job_dirs(), key=lambda job: read_status(job).get("created", 0), reverse=True)


def find_job(job_id: str) -> Path | None:
    """The job folder called ``job_id`` (its name, as the tab shows it), or None."""
    import re

    job_id = (job_id or "").strip().rstrip("/").rsplit("/", 1)[-1]
    if not re.fullmatch(JOB_ID, job_id):
        return None
    job = jobs_dir() / job_id
    return job if (job / "config.json").is_file() else None


def device_slots(device: str = "auto") -> list[str]:
    """The devices a job may run on: each GPU is one slot; CPU (or MPS) is one slot."""
    import torch

    from .engine import pick_device

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [pick_device(device) if device != "cuda" else "cuda"]


def try_acquire_slot(job_dir: str | Path, slots: Sequence[str], take_all: bool = False) -> str | None:
    """Start the job on a free slot if it is first in the queue (``take_all``: on every slot, once
    all are free, for a data-parallel job; recorded comma-separated); the state change happens
    under a lock, so two waiting jobs never take the same slot."""
    from filelock import FileLock

    job_dir = Path(job_dir)
    jobs_dir().mkdir(parents=True, exist_ok=True)
    with FileLock(str(jobs_dir() / ".queue.lock"), timeout=30):
        if queue_position(job_dir) != 1:
            return None
        busy = {slot for job in running_jobs() for slot in str(read_status(job).get("slot") or "").split(",")}
        free = [slot for slot in slots if slot not in busy]
        if not free or (take_all and len(free) < len(slots)):
            return None
        taken = ",".join(free) if take_all else free[0]
        write_status(job_dir, state="running", slot=taken, started=time.time())
        return taken


def wait_for_slot(job_dir: str | Path, slots: Sequence[str], should_stop: StopFn, take_all: bool = False) -> str | None:
    """Block until the job may run (returns its slot) or a stop is requested (returns None)."""
    while not should_stop():
        slot = try_acquire_slot(job_dir, slots, take_all)
        if slot is not None:
            return slot
        time.sleep(QUEUE_POLL_S)
    return None


class StopRequest:
    """A stop asked for by SIGTERM/SIGINT or by a ``cancel`` file in the job folder."""

    def __init__(self, job_dir: str | Path | None = None):
        self.event = threading.Event()
        self.marker = Path(job_dir) / "cancel" if job_dir else None

    def install(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.event.set())
        return self

    def __call__(self) -> bool:
        return self.event.is_set() or bool(self.marker and self.marker.exists())


def run_job(job_dir: str | Path, *, config: FinetuneConfig | None = None, resume: bool = False) -> int:
    """Run (or resume) a job in this process: wait in the queue, train, record everything in the
    job folder. Returns the exit status (0 finished, 1 failed, 2 bad input, 3 cancelled)."""
    import traceback

    job_dir = Path(job_dir)
    if process_rank() != 0:
        return _run_worker(job_dir, config, resume)
    job_dir.mkdir(parents=True, exist_ok=True)
    if config is None:
        config = read_config(job_dir)
    else:
        # Under a launcher every process parsed the same flags; the job remembers how many ran.
        config = replace(config.resolved(), num_processes=max(config.num_processes, world_size()))
        _write_json_atomic(job_dir / "config.json", config.to_dict())
    if resume:
        (job_dir / "cancel").unlink(missing_ok=True)
        _truncate_progress(job_dir, checkpoint_step(last_checkpoint(job_dir / "checkpoints")))
    else:
        (job_dir / "progress.jsonl").unlink(missing_ok=True)
    stop = StopRequest(job_dir).install()
    status = read_status(job_dir)
    write_status(job_dir, state="queued", pid=os.getpid(), pid_started=_process_started(os.getpid()),
                 created=status.get("created", time.time()), error=None, slot=None)
    slot = wait_for_slot(job_dir, device_slots(config.device), stop, take_all=world_size() > 1)
    if slot is None:
        write_status(job_dir, state="cancelled", finished=time.time())
        return EXIT_CANCELLED
    try:
        device = _process_device(slot)
        _select_cuda_device(device)
        result = run_training(replace(config, device=device), checkpoint_dir=job_dir / "checkpoints", resume=resume,
                              on_log=lambda record: _record_progress(job_dir, record), should_stop=stop)
    except Exception as exc:  # every failure ends as one line in status.json, details in train.log
        bad_input = isinstance(exc, (DataError, ValueError)) or type(exc).__name__ == "ModelLoadError"
        traceback.print_exc()
        write_status(job_dir, state="failed", error=_one_line(exc), finished=time.time())
        return EXIT_BAD_INPUT if bad_input else EXIT_FAILED
    return _record_result(job_dir, result)


def _process_device(slot: str) -> str:
    """The device of this process: the job's slot, or in a data-parallel run on GPUs the GPU of
    its local rank (the launcher starts one process per GPU)."""
    if world_size() > 1 and slot.startswith("cuda"):
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return slot.split(",")[0]


def _run_worker(job_dir: Path, config: FinetuneConfig | None, resume: bool) -> int:
    """A rank above 0 of a data-parallel job: it waits until rank 0 holds the job's slots, then
    trains alongside it; rank 0 alone writes the job folder (status, progress, adapter)."""
    import traceback

    config = read_config(job_dir) if config is None else config.resolved()
    stop = StopRequest(job_dir).install()
    while True:
        status = read_status(job_dir)
        if status.get("state") == "running" and _alive(status):
            break
        if stop():
            return EXIT_CANCELLED
        time.sleep(QUEUE_POLL_S)
    try:
        device = _process_device(str(status.get("slot") or config.device))
        _select_cuda_device(device)
        result = run_training(replace(config, device=device), checkpoint_dir=job_dir / "checkpoints", resume=resume,
                              should_stop=stop)
    except Exception:  # rank 0 records the failure; this rank's traceback goes to train.log
        traceback.print_exc()
        return EXIT_FAILED
    return EXIT_CANCELLED if result.status == "cancelled" else EXIT_OK


def _select_cuda_device(slot: str) -> None:
    if slot.startswith("cuda:"):
        import torch

        torch.cuda.set_device(int(slot.split(":")[1]))


PREPARING = ("reading", "loading", "encoding")
"""The phases of a job before its first step: reading the data, loading the model, encoding the examples."""


def _record_progress(job_dir: Path, record: dict) -> None:
    _print_record(record)  # into train.log
    phase = record.get("phase")
    if phase in PREPARING:  # status only: what the job does before its first step, and how far it is
        write_status(job_dir, phase=phase, preparing={k: v for k, v in record.items() if k != "phase"})
        return
    if phase == "training":  # the trainer began: the step count is known before the first step ends
        write_status(job_dir, phase="training", step=record["step"], max_steps=record["max_steps"], preparing=None)
        return
    if phase == "validating":  # progress of a validation pass: status only, not a curve point
        write_status(job_dir, phase="validating", step=record["step"], max_steps=record["max_steps"],
                     eval_batch=record["eval_batch"], eval_batches=record["eval_batches"], preparing=None)
        return
    append_progress(job_dir, record)
    write_status(job_dir, phase="training", step=record["step"], max_steps=record["max_steps"],
                 eta_s=record.get("eta_s"))


def _record_result(job_dir: Path, result: TrainResult) -> int:
    common = dict(step=result.steps, max_steps=result.max_steps, checkpoint=result.checkpoint, finished=time.time())
    if result.status == "cancelled":
        write_status(job_dir, state="cancelled", **common)
        return EXIT_CANCELLED
    _write_json_atomic(job_dir / "samples.json", result.samples)
    write_status(job_dir, state="finished", outcome=result.status, adapter=result.output_dir,
                 metrics=result.metrics, eta_s=0, **common)
    return EXIT_OK


def _one_line(exc: BaseException) -> str:
    """One line a person can act on; a data fault names its file."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, DataError) and exc.report.name and not text.startswith(exc.report.name):
        text = f"{exc.report.name}: {text}"
    return text if isinstance(exc, (DataError, ValueError)) else f"{type(exc).__name__}: {text}"[:500]


# ------------------------------------------------------------------ the UI side of jobs


def cli_args(config: FinetuneConfig) -> list[str]:
    """The ``training.finetune`` flags that reproduce ``config`` (defaults left out)."""
    s, defaults, lora = config.settings, TrainSettings(), LoraSettings()
    args = ["--train_data", config.train_data]
    if config.val_data:
        args += ["--val_data", config.val_data]
    args += ["--model_name", config.model_name, "--output_dir", config.output_dir]
    values = [("--task", s.task, None), ("--num_epochs", s.epochs, None), ("--max_steps", s.max_steps, None),
              ("--batch_size", s.batch_size, None), ("--grad_accum", s.grad_accum, defaults.grad_accum),
              ("--micro_batch_size", s.micro_batch_size, None),
              ("--learning_rate", s.learning_rate, None), ("--max_length", s.max_length, defaults.max_length),
              ("--val_fraction", s.val_fraction, defaults.val_fraction),
              ("--eval_steps", s.eval_every, defaults.eval_every), ("--save_steps", s.save_every, defaults.save_every),
              ("--eval_examples", s.eval_examples, defaults.eval_examples),
              ("--early_stopping_patience", s.early_stopping_patience, defaults.early_stopping_patience),
              ("--seed", s.seed, defaults.seed), ("--lora_r", s.lora.r, lora.r), ("--lora_alpha", s.lora.alpha, lora.alpha),
              ("--lora_dropout", s.lora.dropout, lora.dropout),
              ("--target_modules", s.lora.target_modules, lora.target_modules),
              ("--warmup_ratio", s.warmup_ratio, defaults.warmup_ratio),
              ("--weight_decay", s.weight_decay, defaults.weight_decay),
              ("--keep_checkpoints", s.keep_checkpoints, defaults.keep_checkpoints),
              ("--eval_generations", s.eval_generations, defaults.eval_generations),
              ("--dtype", config.dtype, "auto"), ("--device", config.device, "auto"),
              ("--push_to_hub", config.push_to_hub, None)]
    args += [item for flag, value, default in values if value is not None and value != default
             for item in (flag, str(value))]
    for flag, value in (("qlora", s.qlora), ("gradient_checkpointing", s.gradient_checkpointing)):
        if value is not None:
            args.append(f"--{flag}" if value else f"--no-{flag}")
    args += [flag for flag, on in (("--no_group_by_length", not s.group_by_length), ("--public", not config.private),
                                   ("--overwrite", config.overwrite), ("--trust_remote_code", config.trust_remote_code))
             if on]
    return args


def launcher(num_processes: int, python: str = "python") -> list[str]:
    """How a job's training module is started: plain ``python``, or for a data-parallel job
    ``accelerate launch`` with one process per GPU (``--multi_gpu`` is accelerate's name for
    torchrun-style processes; on a machine without GPUs they train on CPU over gloo)."""
    if num_processes <= 1:
        return [python]
    return [python, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def job_command(job_dir: str | Path, *, resume: bool = False, python: str = "python",
                flags: bool = True) -> list[str]:
    """The command that runs (``resume``: continues) a job. With ``flags`` (what the tab shows) it
    spells the config out as the CLI flags; without (what the tab starts) the child reads the job's
    config.json directly, so the config never round-trips through flags."""
    config = read_config(job_dir)
    start = [*launcher(config.num_processes, python), "-m", "training.finetune"]
    if resume:
        return [*start, "--job_dir", str(job_dir), "--resume"]
    return [*start, *(cli_args(config) if flags else []), "--job_dir", str(job_dir)]


def create_job(config: FinetuneConfig, *, copy_data: bool = True) -> Path:
    """A new job folder holding config.json (and a copy of the data files, so the job can be
    resumed after the uploads are gone), queued but not started."""
    job_dir = new_job_dir()
    if copy_data:
        data = job_dir / "data"
        data.mkdir()
        copies = {"train_data": _copy_into(config.train_data, data, "train")}
        if config.val_data:
            copies["val_data"] = _copy_into(config.val_data, data, "val")
        config = replace(config, **copies)
    _write_json_atomic(job_dir / "config.json", config.resolved().to_dict())
    write_status(job_dir, state="queued", created=time.time(), pid=None)
    return job_dir


def _copy_into(path: str, folder: Path, prefix: str) -> str:
    target = folder / f"{prefix}-{slug(Path(path).name)}"
    shutil.copyfile(path, target)
    return str(target)


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent


TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACEHUB_API_TOKEN")
APP_SECRETS = ("CONVO_OPERATOR_KEY",)
"""The app's own secrets: a training child never needs them."""


def child_environment(config: FinetuneConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The training child's environment: this process's, without Hub tokens unless the job pushes,
    and never with the app's own secrets."""
    env = dict(os.environ if environ is None else environ)
    for name in APP_SECRETS:
        env.pop(name, None)
    if not config.push_to_hub:
        for name in TOKEN_VARIABLES:
            env.pop(name, None)
    return env


def spawn_job(job_dir: str | Path, *, resume: bool = False) -> int:
    """Start the job's training process (detached from the UI) and return its pid.

    The child gets no Hub token (pushes from the UI happen in the UI process after training),
    unless the job's own config asks it to push (``--push_to_hub``, from the command line).
    """
    job_dir = Path(job_dir)
    command = job_command(job_dir, resume=resume, python=sys.executable, flags=False)
    env = child_environment(read_config(job_dir))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_project_root()), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    with open(job_dir / "train.log", "ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=str(_project_root()), env=env, start_new_session=True)
    write_status(job_dir, pid=process.pid, pid_started=_process_started(process.pid))
    # Reap the child when it ends, so a finished job is never mistaken for a live (zombie) one.
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    return process.pid


def start_job(config: FinetuneConfig) -> Path:
    """Create a job for ``config`` and start it; returns the job folder."""
    job_dir = create_job(config)
    spawn_job(job_dir)
    return job_dir


def resume_job(job_dir: str | Path) -> int:
    """Continue a cancelled, failed or died job from its last checkpoint; returns the new pid."""
    state = job_state(job_dir)
    _check(state in ("cancelled", "failed", "died"), f"only a stopped job can be resumed (this one is {state})")
    (Path(job_dir) / "cancel").unlink(missing_ok=True)
    write_status(job_dir, state="queued", created=time.time(), error=None)
    return spawn_job(job_dir, resume=True)


def cancel_job(job_dir: str | Path) -> str:
    """Ask a queued or running job to stop; it saves a checkpoint and exits within a step."""
    job_dir = Path(job_dir)
    status = read_status(job_dir)
    state = job_state(job_dir, status)
    if state not in ("queued", "running"):
        return f"Nothing to cancel: the job is {state}."
    (job_dir / "cancel").touch()
    if _alive(status):
        try:
            os.kill(status["pid"], signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    return "Cancelling: the job saves a checkpoint and stops after the current step or validation batch."


@dataclass
class JobView:
    """What the tab shows about one job."""

    job_dir: str
    state: str
    step: int = 0
    max_steps: int = 0
    eta_s: float | None = None
    queue_position: int | None = None
    error: str | None = None
    adapter: str | None = None
    metrics: dict = field(default_factory=dict)
    checkpoint: str | None = None
    progress: list[dict] = field(default_factory=list)
    phase: str = "training"
    """``training`` or ``validating`` (a validation pass, with its own ``eval_batch`` of ``eval_batches``)."""
    eval_batch: int = 0
    eval_batches: int | None = None
    preparing: dict = field(default_factory=dict)
    """Before the first step (``phase`` in PREPARING): the file read, the model loaded, or the split
    encoded with ``done`` of ``total`` examples."""

    @property
    def fraction(self) -> float:
        return min(self.step / self.max_steps, 1.0) if self.max_steps else 0.0


def job_view(job_dir: str | Path) -> JobView:
    """Everything the tab needs to draw a job, read from its folder."""
    status = read_status(job_dir)
    state = job_state(job_dir, status)
    progress = read_progress(job_dir)
    last = progress[-1] if progress else {}
    return JobView(str(job_dir), state, status.get("step", last.get("step", 0)),
                   status.get("max_steps", last.get("max_steps", 0)), status.get("eta_s"),
                   queue_position(job_dir) if state == "queued" else None, status.get("error"), status.get("adapter"),
                   status.get("metrics") or {}, status.get("checkpoint") or last_checkpoint(Path(job_dir) / "checkpoints"),
                   progress, status.get("phase") or "training", status.get("eval_batch") or 0, status.get("eval_batches"),
                   status.get("preparing") or {})


def read_samples(job_dir: str | Path) -> list[dict]:
    path = Path(job_dir) / "samples.json"
    return json.loads(path.read_text()) if path.is_file() else []


def format_seconds(seconds: float | None) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``; past a day the days are counted (a run planned
    on a whole CoQA file on a CPU showed "243:05:00"): ``874800`` -> ``10 days 3:00:00``."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    days, seconds = divmod(seconds, 86400)
    hours, rest = divmod(seconds, 3600)
    clock = f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours or days else f"{rest // 60}:{rest % 60:02d}"
    return f"{days} day{'s' if days > 1 else ''} {clock}" if days else clock


def preparing_text(phase: str, detail: dict) -> str:
    """What a job does before its first step, in words.

    >>> preparing_text("encoding", {"split": "training", "done": 40000, "total": 97128})
    'encoding the training examples: 40,000 / 97,128'
    """
    if phase == "reading":
        return f"reading and checking {detail.get('file') or 'the data'}"
    if phase == "loading":
        return f"loading the base model {detail.get('model') or ''}".rstrip()
    return f"encoding the {detail.get('split', 'training')} examples: {detail.get('done', 0):,} / {detail.get('total', 0):,}"


_printed_tenth: dict[str, int] = {}


def _new_tenth(key: str, done: int, total: int | None) -> bool:
    """Is ``done`` in a tenth of ``total`` not printed yet for ``key``? (The first and last always are.)
    The status shows progress every second; the log (a terminal, train.log) gets a line a tenth."""
    tenth = done * 10 // total if total else done
    if done > 1 and _printed_tenth.get(key) == tenth:
        return False
    _printed_tenth[key] = tenth
    return True


def _print_record(record: dict) -> None:
    phase = record.get("phase")
    if phase == "encoding" and not _new_tenth(record["split"], record["done"], record["total"]):
        return
    if phase == "validating" and not _new_tenth("validating", record["eval_batch"], record.get("eval_batches")):
        return
    if phase in PREPARING:
        print(preparing_text(phase, record), flush=True)
        return
    parts = [f"step {record['step']}/{record['max_steps']}"]
    if record.get("phase") == "validating":
        parts.append(f"validating batch {record['eval_batch']}/{record.get('eval_batches') or '?'}")
    parts += [f"{key} {record[key]:.4f}" for key in ("loss", "eval_loss") if key in record]
    if record.get("eta_s") is not None:
        parts.append(f"eta {format_seconds(record['eta_s'])}")
    print("  ".join(parts), flush=True)
