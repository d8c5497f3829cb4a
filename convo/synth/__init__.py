"""Synthetic conversations to train small chat models on: persona role-play and keyword scripts.

Batched (all conversations of a batch advance turn by turn together), filtered, resumable (each kept
conversation is appended to the output at once; a rerun skips finished items). Run it with
``python -m convo synth --config keywords.json --out out.jsonl`` or
``python -m convo synth --personas personas.json --seeds seeds.txt --out out.jsonl [--forever]``.

The package: config (keyword and persona configs, templates), seeds (seed files), jobs (items, SynthSampling),
parsing (scripts into turns, filters), programs (one multi-step generation per item), output (chat
JSONL, flat JSON), run (runs, preview, Hub push). Its names are re-exported here.
"""
from __future__ import annotations

from .config import (AGENTS, check_template, compile_exclude, ConfigError, DEFAULT_AGENT_TEMPLATE,
                     DEFAULT_ASSISTANT_PROMPT, DEFAULT_EXCLUDE, DEFAULT_KEYWORD_PROMPT_LINES,
                     DEFAULT_RESTYLE_TEMPLATE, DEFAULT_ROLES, DEFAULT_SCRIPT_TEMPLATE, described_files, fill_template,
                     grid, KEYWORD, keyword_config_from_dict, KEYWORD_STRATEGIES, KeywordConfig, LINE_TOKENS,
                     load_keyword_config, load_persona_config, MAX_SEEDS_IN_CARD, MESSAGE_TOKENS, MODES,
                     Persona, PERSONA, PERSONA_COLUMNS, persona_config_from_dict,
                     persona_config_to_dict, PERSONA_FIELDS, persona_rows, PERSONA_SCRIPT_ROLES, PersonaConfig,
                     personas_from_rows, read_json, read_text, RESTYLE_FIELDS, SCRIPT, SCRIPT_TOKENS,
                     STRATEGIES, TURNS)
from .seeds import parse_seed_text, read_seeds, SEED_FIELDS
from .jobs import (default_sampling, default_template, Item, item_key, Job, KeywordJob, PersonaJob, SynthSampling)
from .parsing import (clean_reply, cut_to, keyword_faults, mentions, parse_script, persona_faults, strip_actions,
                      strip_address)
from .programs import (first_line, generate_items, judge_keyword_script, program_for, Result)
from .output import (_writing, append_record, done_keys, Interrupted, make_record, output_counts, read_records,
                     repair_tail, write_flat_json)
from .run import (card_model, dataset_config, format_seconds, model_label, preview, Progress, push_to_hub, run, transcript)
