"""Fine-tuning: LoRA / QLoRA adapters trained on the user's question-answer data, as jobs.

In-process: ``train_adapter(spec, train, valid, TrainSettings(...), "out/adapter")``; from files:
``run_training(FinetuneConfig(...))``. Jobs (a folder, a subprocess, a queue per device) and the
``python -m training.finetune`` CLI live in convo.jobs.

The package: config (TrainSettings, FinetuneConfig, TrainResult, exit codes, converters to peft's
LoraConfig and transformers' TrainingArguments), encode (examples -> tokens with assistant-only
labels, the collator), train (the targets-only loss, the Trainer, checkpoints, progress,
train_adapter), save (the adapter folder, its card, the Hub push), evaluate (ROUGE-L, BLEU, base vs
adapter, validation loss, evaluate_adapter), run (run_training from files). Its names are
re-exported here; torch, transformers and peft are imported inside the functions that need them.
"""
from __future__ import annotations

from ..settings import BUNDLED_HUB_ID
from .config import (Conversation, END_OF_TURN_MARKERS, EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILED,
                     EXIT_OK, FinetuneConfig, LogFn, METADATA_FILE, StopFn, TrainResult, TrainSettings, _check, log,
                     target_module_list, to_lora_config, to_training_arguments)
from .encode import EncodedDataset, assistant_spans, encode_example, encode_examples, pad_collator
from .train import (TrainingCancelled, attach_lora, checkpoint_step, default_output_dir, eval_sample,
                    evaluations_left, last_checkpoint, load_base_for_training, make_trainer, next_token_target_mask,
                    plan_time_split, process_rank, supports_targets_only_loss, targets_only_loss, train_adapter,
                    training_quantization, world_size)
from .save import hub_base_model, push_adapter_to_hub, read_metadata, save_adapter, slug, write_card
from .evaluate import (_metric_words, bleu, compare_on_passages, compare_with_base, eval_sampling, evaluate_adapter,
                       generation_scores, passage_prompt, prompt_text, rouge_l, validation_loss)
from .run import TrainingData, load_training_data, run_training

__all__ = ["BUNDLED_HUB_ID", "Conversation", "END_OF_TURN_MARKERS", "EXIT_BAD_INPUT", "EXIT_CANCELLED", "EXIT_FAILED",
           "EXIT_OK", "EncodedDataset", "FinetuneConfig", "LogFn", "METADATA_FILE", "StopFn", "TrainResult",
           "TrainSettings", "TrainingCancelled", "TrainingData", "_check", "_metric_words", "assistant_spans",
           "attach_lora", "bleu", "checkpoint_step", "compare_on_passages", "compare_with_base", "default_output_dir",
           "encode_example", "encode_examples", "eval_sample", "eval_sampling", "evaluate_adapter", "evaluations_left",
           "generation_scores", "hub_base_model", "last_checkpoint", "load_base_for_training", "load_training_data",
           "log", "make_trainer", "next_token_target_mask", "pad_collator", "passage_prompt", "plan_time_split",
           "process_rank", "prompt_text",
           "push_adapter_to_hub", "read_metadata", "rouge_l", "run_training", "save_adapter", "slug",
           "supports_targets_only_loss", "target_module_list", "targets_only_loss", "to_lora_config",
           "to_training_arguments", "train_adapter", "training_quantization", "validation_loss", "world_size",
           "write_card"]
