# ImageNet-1k fine-tuning of the ADDP ViT-B/16 encoder at 256x256, the ADDP release's recipe (an
# MAE-style end-to-end fine-tune). Paper (ADDP, ICLR 2024, downstream results table): top-1 83.9.
#
#   python tools/train.py configs/imagenet/addp-vit-base-p16_8xb128-coslr-100e_in1k-256px.py
#   python tools/test.py  configs/imagenet/addp-vit-base-p16_8xb128-coslr-100e_in1k-256px.py CKPT
#
# Built on mmpretrain's own bases: the ImageNet 256px pipeline with RandAugment and random
# erasing, the AdamW batch-1024 schedule, and the default runtime.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_256.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['addp_mm'], allow_failed_imports=False)

# the released ADDP ViT-B/16 checkpoint (pretraining file as released; only the encoder is read)
pretrained = 'checkpoints/addp-vit-base-16.pth'

# Data (from the base): RandomResizedCrop 256 (bicubic), flip, RandAugment m9 / std 0.5 (timm's
# 'rand-m9-mstd0.5-inc1'), random erasing p=0.25. Batch 1024 = 8 GPUs x 128 (paper).
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

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ADDPViT',
        arch='base',
        img_size=256,                   # paper: input 256
        patch_size=16,
        drop_path_rate=0.1,             # paper, ViT-B
        with_cls_token=True,
        out_type='avg_featmap',         # release classifier: mean of the patch tokens + fc_norm
        final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),  # smoothing 0.1
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=2e-5)]),  # MAE-style head init
    # paper: mixup 0.8, cutmix 1.0 (one of the two per batch)
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))

# AdamW, weight decay 0.05 (none on norms, biases, position / class tokens), layer decay 0.65
# (paper, ViT-B). lr = blr x batch / 256 = 1e-3 x 1024 / 256 (paper: blr 1e-3); --auto-scale-lr
# rescales it for other total batch sizes.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3 * 1024 / 256, weight_decay=0.05, betas=(0.9, 0.999)),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(_delete_=True, layer_decay_rate=0.65))
auto_scale_lr = dict(base_batch_size=1024)

# 20 warm-up epochs (paper, ViT-B), then cosine to 1e-6 at epoch 100 (paper: 100 epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=20, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)

default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
randomness = dict(seed=0, diff_rank_seed=True)
