# What the trainings of the frozen parts share (configs/toy/vq-autoencoder_*.py and
# mage-token-trainer_*.py): mmpretrain's runtime, an iteration-based run with no validation or
# test loop (the toy chain evaluates the exported parts itself, tools/run_toy_pipeline.py), logs
# by iteration, seed 0.
_base_ = 'mmpretrain::_base_/default_runtime.py'

val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
log_processor = dict(by_epoch=False)
randomness = dict(seed=0, deterministic=False)
