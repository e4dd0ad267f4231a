# A tiny ADDP pretraining that runs on a CPU in a few minutes on the demo images
# (python tools/make_demo_data.py data/demo). Same algorithm as the release configs, tiny sizes:
# 64x64 images, a tokenizer that downsamples by 16 (as MAGE's) -> 4x4 token grid, 16x16 patches
# for the 4-block 64-wide 'demo' encoder (token grid and patch grid must coincide), a 2-block
# decoder. The encoder has the shapes of the demo detector / segmenter / classifier
# (configs/demo/: arch 'demo', 16x16 patches; their 128-px position tables are resized on load),
# so its exported backbone.pth fine-tunes there (README "From pretraining to fine-tuning").
# Without real MAGE weights the frozen tokenizer and token predictor are randomly initialised
# (the runner says so at start): the run shows that the pipeline trains (the loss falls) and
# exports a backbone.pth, not a useful representation.
#
#   python tools/train.py configs/pretrain/addp_vit-tiny_demo.py
#   -> work_dirs/addp_vit-tiny_demo/iter_300.pth (encoder + decoder: generation, resuming)
#      work_dirs/addp_vit-tiny_demo/backbone.pth (encoder only: fine-tuning)
#   python tools/generate.py configs/pretrain/addp_vit-tiny_demo.py \
#       work_dirs/addp_vit-tiny_demo/iter_300.pth --num-images 8 --out-dir work_dirs/gen_demo
_base_ = './addp_vit-base-p16_1600e_in1k.py'

tokenizer_checkpoint = None
token_predictor_checkpoint = None
data_root = 'data/demo/unlabeled'
img_size = 64
patch_size = 16  # = the tokenizer's downsampling factor 2 ** (len(ch_mult) - 1)

model = dict(
    backbone=dict(arch='demo', img_size=img_size, patch_size=patch_size, drop_rate=0.0, attn_drop_rate=0.0),
    neck=dict(depth=2, num_heads=4, drop=0.0),
    target_generator=dict(
        tokenizer=dict(ch=32, ch_mult=[1, 1, 1, 2, 2], num_res_blocks=1, resolution=img_size,
                       checkpoint=tokenizer_checkpoint, precision='fp32'),
        token_predictor=dict(embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=64, decoder_depth=1,
                             decoder_num_heads=4, checkpoint=token_predictor_checkpoint,
                             precision='fp32')))
# the demo's numbers are the same on every CPU: float32 frozen parts (the base config's 'auto'
# takes bf16 where the hardware has it natively)

train_pipeline = [
    # any PNG/JPEG mode as 8-bit BGR; an unreadable file stops with its name (or
    # on_bad_file='skip': skipped with a warning and a count), addp_mm/datasets/transforms.py
    dict(type='LoadImageChecked', on_bad_file='error'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.2, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root, with_label=False,
                 extensions=('.jpg', '.jpeg', '.png', '.webp', '.bmp'), pipeline=train_pipeline))

# fp32: a non-finite loss stops training on every rank (max_consecutive_skips=0)
optim_wrapper = dict(type='NonFiniteGuardOptimWrapper', _delete_=True, max_consecutive_skips=0,
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05),
                     clip_grad=dict(max_norm=3.0),
                     constructor='LayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay_rate=1.0, no_decay_names=()))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=300),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=300)
default_hooks = dict(logger=dict(type='LoggerHook', interval=20),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=8)
randomness = dict(seed=0, deterministic=False)
