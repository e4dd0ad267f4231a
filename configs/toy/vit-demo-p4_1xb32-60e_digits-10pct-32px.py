# Toy downstream (docs/user_guides/train_every_part.md): fine-tune the toy ADDP encoder on
# scikit-learn's handwritten digits with 10% of the training labels (143 images), evaluate on the
# whole val split (359 images). The same schedule from the toy pretraining's backbone.pth and from
# a random initialisation, so the two differ only by the encoder's starting weights.
#
#   python tools/make_demo_data.py data/demo --only digits
#   python tools/train.py configs/toy/vit-demo-p4_1xb32-60e_digits-10pct-32px.py \
#       [--pretrained work_dirs/<toy pretraining>/backbone.pth] [--cfg-options randomness.seed=1]
#
# tools/run_toy_pipeline.py runs it through tools/toy_metrics.py:run_downstream (seeds 0, 1, 2).
# Recipe: the release's MAE-style end-to-end fine-tune (mean of the patch tokens + fc_norm, linear
# head, label smoothing 0.1, AdamW with layer decay, warm-up + cosine) shrunk to 32-px digits and
# about a minute on 2 CPU cores.
_base_ = [
    '../_base_/models/vit-base-p16_addp-cls.py',
    '../_base_/datasets/digits-32px.py',
    '../_base_/schedules/vit_addp-finetune_adamw-coslr-100e.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        arch='demo',                    # the toy encoder of the toy pretraining: 64 wide, 4 blocks
        img_size=32,
        patch_size=4,                   # 8 x 8 patches = the toy tokenizer's 8 x 8 token grid
        pre_norm=True,                  # as pretrained (ADDP's tokenizer_norm after the positions)
        drop_path_rate=0.1,
        # random initialisation (from scratch); tools/train.py --pretrained FILE starts from the
        # backbone.pth a pretraining exports (its position table is resized on load)
        init_cfg=None),
    head=dict(num_classes=10, in_channels=64),
    train_cfg=None)                     # no mixup / cutmix

train_dataloader = dict(dataset=dict(ann_file='meta/train_10pct.txt'))

# from scratch and from pretraining alike: AdamW lr 1e-3, weight decay 0.05 and layer decay 0.75
# (the release's fine-tuning uses 0.65 for ViT-B's 12 blocks; 4 blocks here)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05),
                     paramwise_cfg=dict(layer_decay_rate=0.75))
auto_scale_lr = dict(base_batch_size=32)

# 143 images / 32 = 5 iterations an epoch: 60 epochs = 300 iterations
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=5, end=60,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=60, val_interval=20)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=60, max_keep_ckpts=1))
# seeds 0, 1, 2 (--cfg-options randomness.seed=N); deterministic kernels (on a GPU
# run_downstream sets CUBLAS_WORKSPACE_CONFIG, which torch then needs)
randomness = dict(seed=0, diff_rank_seed=True, deterministic=True)
