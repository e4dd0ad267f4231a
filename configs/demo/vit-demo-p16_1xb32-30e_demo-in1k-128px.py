# Demo: the ImageNet fine-tuning recipe of configs/imagenet/ (ADDPViT, mean-pooled patch tokens +
# fc_norm, linear head, label smoothing, AdamW with layer decay, warm-up + cosine) shrunk to a
# tiny ViT and the synthetic class-folder data of `tools/make_demo_data.py` (4 shape classes),
# trained from scratch (or from a demo pretraining: --pretrained FILE).
#
#   python tools/make_demo_data.py data/demo
#   python tools/train.py configs/demo/vit-demo-p16_1xb32-30e_demo-in1k-128px.py
#   python tools/test.py  configs/demo/vit-demo-p16_1xb32-30e_demo-in1k-128px.py \
#       work_dirs/vit-demo-p16_1xb32-30e_demo-in1k-128px/epoch_30.pth
_base_ = [
    '../_base_/models/vit-base-p16_addp-cls.py',
    '../_base_/datasets/demo_imagenet-128px.py',
    '../_base_/schedules/vit_addp-finetune_adamw-coslr-100e.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        arch='demo',                    # 64 wide, 4 blocks, 4 heads, 16x16 patches
        img_size=128,
        drop_path_rate=0.0,
        # from scratch; tools/train.py --pretrained work_dirs/<demo pretraining>/backbone.pth
        # starts from a demo pretraining's encoder (its 64-px position table is resized on load)
        init_cfg=None),
    head=dict(num_classes=4, in_channels=64),
    # no mixup / cutmix: with 240 training images and a few minutes they slow learning down more
    # than they regularise
    train_cfg=None)

# from scratch: a higher lr than the release's, mild layer decay
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05),
                     paramwise_cfg=dict(layer_decay_rate=0.9))
auto_scale_lr = dict(base_batch_size=32)

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=5, end=30,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=30, val_interval=10)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=30, max_keep_ckpts=1))
# a fixed seed: the demo numbers say which seeds they come from (--cfg-options randomness.seed=N)
randomness = dict(seed=0, diff_rank_seed=True, deterministic=False)
