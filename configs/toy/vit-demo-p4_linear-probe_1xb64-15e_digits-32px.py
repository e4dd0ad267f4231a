# Toy downstream (docs/user_guides/train_every_part.md): linear probe of the toy ADDP encoder on
# scikit-learn's handwritten digits - the encoder frozen, a linear classifier trained on all
# training labels (1438 images), evaluated on the val split (359 images). The same schedule from
# the toy pretraining's backbone.pth and from a random initialisation.
#
#   python tools/train.py configs/toy/vit-demo-p4_linear-probe_1xb64-15e_digits-32px.py \
#       [--pretrained work_dirs/<toy pretraining>/backbone.pth] [--cfg-options randomness.seed=1]
#
# MAE's linear probe (mmpretrain's mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py):
# frozen encoder with its final norm, a BatchNorm without affine parameters (ClsBatchNormNeck),
# then the linear head; no label smoothing, no weight decay. Features here: the mean of the
# patch tokens (+ the parameter-free part of fc_norm: its affine parameters are undone by the BN).
_base_ = './vit-demo-p4_1xb32-60e_digits-10pct-32px.py'

model = dict(
    backbone=dict(
        frozen_stages=4,        # all 4 blocks, the embeddings and the final norm: nothing trains
        final_norm=True,        # the encoder as pretrained (its last LayerNorm)
        drop_path_rate=0.0),
    neck=dict(_delete_=True, type='ClsBatchNormNeck', input_features=64),  # the base has none
    head=dict(
        loss=dict(_delete_=True, type='CrossEntropyLoss'),  # MAE linear probe: no smoothing
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.01)]))  # MAE linear probe

train_dataloader = dict(batch_size=64, dataset=dict(ann_file='meta/train.txt'))

# AdamW instead of MAE's LARS at batch 16384 (one small batch here); no weight decay, no layer
# decay (only the head and the BN train)
optim_wrapper = dict(optimizer=dict(lr=1e-2, weight_decay=0.0),
                     paramwise_cfg=dict(layer_decay_rate=1.0))
auto_scale_lr = dict(base_batch_size=64)

# 1438 images / 64 = 23 iterations an epoch: 15 epochs = 345 iterations (frozen encoder: cheap)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=1, end=15,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=15, val_interval=5)
default_hooks = dict(checkpoint=dict(interval=15))
