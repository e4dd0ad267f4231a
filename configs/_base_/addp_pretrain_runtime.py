# What every ADDP pretraining run shares: mmpretrain's runtime, our runner (it keeps the frozen
# parts out of the optimizer, checks their files before anything is built and exports
# backbone.pth at the end) and, as the release (main_pretrain.py), no TF32 in matmuls /
# convolutions (keep this hook when adding others: a config's list replaces this one).
_base_ = 'mmpretrain::_base_/default_runtime.py'

runner_type = 'ADDPPretrainRunner'
custom_hooks = [dict(type='TF32Hook', allow_tf32=False)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
randomness = dict(seed=0, diff_rank_seed=True)
