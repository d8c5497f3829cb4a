"""Train a LoRA/QLoRA adapter from a data file.

    python -m training.finetune --train_data train.json --val_data val.json --model_name bundled \\
        --num_epochs 3 --batch_size 8 --learning_rate 5e-5 --output_dir ./adapter [--qlora] \\
        [--push_to_hub user/repo] [--task qg|cqg|qa|qa_closed|chat] [--max_steps N] [--resume] [--job_dir DIR]

Exit status: 0 trained, 1 failed, 2 bad input (the message names the fault), 3 cancelled (resume with --resume).
The push token comes from $HF_TOKEN, never from the command line.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from convo.cli.train import build_parser, cli_main

    args = build_parser("python -m training.finetune").parse_args(argv)
    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
