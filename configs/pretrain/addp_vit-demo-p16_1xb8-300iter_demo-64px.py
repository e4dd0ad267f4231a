# A tiny ADDP pretraining that runs on a CPU in a few minutes on the demo images
# (python tools/make_demo_data.py data/demo). Same algorithm as the release configs, tiny sizes:
# 64x64 images, a tokenizer that downsamples by 16 (as MAGE's) -> 4x4 token grid, 16x16 patches
# for the 4-block 64-wide 'demo' encoder (token grid and patch grid must coincide), a 2-block
# decoder. The encoder has the shapes of the demo detector / segmenter / classifier
# (configs/demo/: arch 'demo', 16x16 patches; their 128-px position tables are resized on load),
# so its exported backbone.pth fine-tunes there (docs/get_started.md). Without MAGE's weights the
# frozen tokenizer and token predictor are randomly initialised (the runner says so at start):
# the run shows that the pipeline trains (the loss falls) and exports a backbone.pth, not a
# useful representation.
#
#   python tools/train.py configs/pretrain/addp_vit-demo-p16_1xb8-300iter_demo-64px.py
#   -> work_dirs/addp_vit-demo-p16_1xb8-300iter_demo-64px/iter_300.pth (encoder + decoder)
#      work_dirs/addp_vit-demo-p16_1xb8-300iter_demo-64px/backbone.pth (encoder only)
_base_ = [
    '../_base_/models/addp_vit-base-p16.py',
    '../_base_/datasets/demo_unlabeled-64px.py',
    '../_base_/addp_pretrain_runtime.py',
    '../_base_/schedules/adamw_fp32-guard_iter.py',
]

model = dict(
    # 16x16 patches = the tokenizer's downsampling factor 2 ** (len(ch_mult) - 1)
    backbone=dict(arch='demo', img_size=64, patch_size=16, drop_rate=0.0, attn_drop_rate=0.0),
    neck=dict(depth=2, num_heads=4, drop=0.0),
    # random frozen parts (checkpoint None), float32 so that the demo's numbers are the same on
    # every CPU (the base's 'auto' takes bf16 where the hardware has it natively)
    target_generator=dict(
        precision='fp32',
        tokenizer=dict(ch=32, ch_mult=[1, 1, 1, 2, 2], num_res_blocks=1, resolution=64,
                       checkpoint=None, precision='fp32'),
        token_predictor=dict(embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=64, decoder_depth=1,
                             decoder_num_heads=4, checkpoint=None)))

# the schedule of 300 iterations (the optimizer: _base_/schedules/adamw_fp32-guard_iter.py)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=300),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300)
default_hooks = dict(logger=dict(type='LoggerHook', interval=20),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=8)
randomness = dict(seed=0, deterministic=False)
