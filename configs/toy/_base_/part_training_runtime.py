# What the two frozen-part trainings of the toy chain share (configs/toy/vq-tokenizer_*.py and
# mage-token-predictor_*.py): an iteration-based run with no validation or test loop (the chain
# evaluates the exported parts itself, tools/run_toy_pipeline.py), logs by iteration, seed 0.
_base_ = ['mmpretrain::_base_/default_runtime.py']

val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
log_processor = dict(by_epoch=False)
randomness = dict(seed=0, deterministic=False)
