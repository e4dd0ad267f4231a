# Demo: the ADE20K UperNet recipe of configs/ade20k/ (ADDPViT taps -> Feature2Pyramid -> UPerHead
# + FCN auxiliary head, layer decay, warm-up + poly, slide inference, mIoU) shrunk to a tiny ViT
# and the synthetic ADE-format data of `tools/make_demo_data.py` (4 shape classes + background),
# trained from scratch (or from a demo pretraining: --pretrained FILE).
#
#   python tools/make_demo_data.py data/demo
#   python tools/train.py configs/demo/upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py
#   python tools/test.py  configs/demo/upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py \
#       work_dirs/upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128/iter_2000.pth
_base_ = [
    '../_base_/models/upernet_vit-base-p16_addp.py',
    '../_base_/datasets/demo_ade-128x128.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]

norm_cfg = dict(type='BN', requires_grad=True)  # one process on a CPU: plain BN, not SyncBN
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(
        arch='demo',                    # 64 wide, 4 blocks, 4 heads, 16x16 patches
        img_size=128,
        drop_path_rate=0.0,
        out_indices=[0, 1, 2, 3],       # every block feeds one pyramid level
        # from scratch; tools/train.py --pretrained work_dirs/<demo pretraining>/backbone.pth
        # starts from a demo pretraining's encoder (its 64-px position table is resized on load)
        init_cfg=None),
    neck=dict(embed_dim=64, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=[64] * 4, channels=64, pool_scales=(1, 2, 3, 6),
                     num_classes=5, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=64, channels=32, num_classes=5, norm_cfg=norm_cfg),
    test_cfg=dict(mode='slide', crop_size=(128, 128), stride=(85, 85)))

# CPU: full precision; from scratch a higher lr than the release's 1e-4, mild layer decay
optim_wrapper = dict(
    _delete_=True,                      # the base schedule's SGD is replaced
    type='OptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.9),
    optimizer=dict(type='AdamW', lr=6e-4, betas=(0.9, 0.999), weight_decay=0.05))
auto_scale_lr = dict(enable=False, base_batch_size=8)

max_iters = 2000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=100, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False)
# a fixed seed: the demo numbers say which seeds they come from (--cfg-options randomness.seed=N)
randomness = dict(seed=0, deterministic=False)
