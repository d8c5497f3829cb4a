"""Command-line scripts over convo.finetune: ``python -m training.finetune`` trains an adapter,
``python -m training.evaluate`` scores one. Both are thin: parse, build the config, call convo.
"""
