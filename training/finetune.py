"""Train a LoRA/QLoRA adapter from a data file.

    python -m training.finetune --train_data train.json --val_data val.json --model_name bundled \\
        --num_epochs 3 --batch_size 8 --learning_rate 5e-5 --output_dir ./adapter [--qlora] \\
        [--push_to_hub user/repo] [--task qg|cqg|qa|qa_closed|chat] [--max_steps N] [--resume] [--job_dir DIR]

Exit status: 0 trained, 1 failed, 2 bad input (the message names the fault), 3 cancelled (resume with --resume).
Checkpoints, the optimizer's state included (about 60 MB for the bundled model), go to
``<output_dir>.checkpoints/``; ``--resume`` continues from the last one there, after a cancel or to train a
finished run further (a larger ``--max_steps``). A finished run leaves them: delete that folder when done.
The push token comes from $HF_TOKEN, never from the command line.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from convo.cli.train import build_parser, cli_main

    args = build_parser("python -m training.finetune").parse_args(argv)
    try:
        return cli_main(args)
    finally:
        close_process_group()


def close_process_group() -> None:
    """End a data-parallel run's process group while the interpreter is whole. Left to the
    interpreter's teardown, Gloo's worker threads can abort the process ("terminate called without
    an active exception": a CI run's rank 1, after its work was done, so the launcher called the
    job failed; pytorch/pytorch#179291 describes the crash)."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
