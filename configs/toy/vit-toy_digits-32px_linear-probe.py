# Toy downstream (issue 12, README "Training every part yourself"): linear probe of the toy ADDP
# encoder on scikit-learn's handwritten digits - the encoder frozen, a linear classifier trained on
# all training labels (1438 images), evaluated on the val split (359 images). Same schedule from
# the toy pretraining's backbone.pth and from a random initialisation.
#
#   python tools/train.py configs/toy/vit-toy_digits-32px_linear-probe.py \
#       [--pretrained work_dirs/<toy pretraining>/backbone.pth] [--cfg-options randomness.seed=1]
#
# MAE's linear probe (mmpretrain's mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py):
# frozen encoder with its final norm, a BatchNorm without affine parameters (ClsBatchNormNeck),
# then the linear head; no label smoothing, no weight decay. Features here: the mean of the
# patch tokens (+ the parameter-free part of fc_norm: its affine parameters are undone by the BN).
# Measured from a random init (seeds 0, 1, 2): val top-1 74.4 / 73.8 / 70.8 (73.0 +- 2.0),
# 47-63 s a run (start-up included) with OMP_NUM_THREADS=1 on the shared 2-core machine.
_base_ = './vit-toy_digits-32px_finetune-10pct.py'

embed_dims = 64
model = dict(
    backbone=dict(
        frozen_stages=4,        # all 4 blocks, the embeddings and the final norm: nothing trains
        final_norm=True,        # the encoder as pretrained (its last LayerNorm)
        drop_path_rate=0.0),
    neck=dict(_delete_=True, type='ClsBatchNormNeck', input_features=embed_dims),
    head=dict(
        loss=dict(_delete_=True, type='CrossEntropyLoss'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.01)]))  # MAE linear probe

train_dataloader = dict(batch_size=64, dataset=dict(ann_file='meta/train.txt'))

# AdamW instead of MAE's LARS at batch 16384 (one small batch here); no weight decay, no layer
# decay (only the head and the BN train)
optim_wrapper = dict(optimizer=dict(lr=1e-2, weight_decay=0.0),
                     paramwise_cfg=dict(layer_decay_rate=1.0))
auto_scale_lr = dict(base_batch_size=64)

# 1438 images / 64 = 23 iterations an epoch: 15 epochs = 345 iterations (frozen encoder: cheap)
max_epochs = 15
warmup_epochs = 1
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
