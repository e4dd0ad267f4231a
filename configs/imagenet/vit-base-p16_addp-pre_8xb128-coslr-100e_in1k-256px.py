# ImageNet-1k fine-tuning of the ADDP ViT-B/16 encoder at 256x256, the ADDP release's recipe (an
# MAE-style end-to-end fine-tune). Paper (ADDP, ICLR 2024, downstream results table): top-1 83.9.
#
#   python tools/train.py configs/imagenet/vit-base-p16_addp-pre_8xb128-coslr-100e_in1k-256px.py
#   python tools/test.py  configs/imagenet/vit-base-p16_addp-pre_8xb128-coslr-100e_in1k-256px.py CKPT
#
# Data (mmpretrain's ImageNet 256px base): RandomResizedCrop 256 (bicubic), flip, RandAugment
# m9 / std 0.5 (timm's 'rand-m9-mstd0.5-inc1'), random erasing p=0.25. Batch 1024 = 8 GPUs x 128.
_base_ = [
    '../_base_/models/vit-base-p16_addp-cls.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_256.py',
    '../_base_/schedules/vit_addp-finetune_adamw-coslr-100e.py',
    'mmpretrain::_base_/default_runtime.py',
]

# Evaluation as the release (util/datasets.py build_transform): for inputs larger than 224 the crop
# ratio is 1.0, i.e. short side resized to 256 (bicubic), then the centre 256x256 crop (the base's
# test pipeline resizes to 292 and crops 256, crop ratio 0.875).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=256),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
randomness = dict(seed=0, diff_rank_seed=True)
