# Demo: the ADE20K UperNet recipe of configs/ade20k/ (ADDPViT taps -> Feature2Pyramid -> UPerHead
# + FCN auxiliary head, layer decay, warm-up + poly, slide inference, mIoU) shrunk to a tiny ViT
# and the synthetic ADE-format data of `tools/make_demo_data.py` (4 shape classes + background).
#
#   python tools/make_demo_data.py data/demo
#   python tools/train.py configs/demo/upernet_addp-vit-demo_demo-ade-128x128.py
#   python tools/test.py  configs/demo/upernet_addp-vit-demo_demo-ade-128x128.py \
#       work_dirs/upernet_addp-vit-demo_demo-ade-128x128/iter_2000.pth
#
# Target (issue 6): mIoU >= 0.5 on the demo val split after <= 15 minutes on 2 CPU cores.
_base_ = '../ade20k/upernet_addp-vit-base-p16_8xb2-160k_ade20k-512x512.py'

data_root = 'data/demo/ade/'
# = tools/demo_data.py: ADE_DEMO_CLASSES / ADE_DEMO_PALETTE. On disk 0 is an ignored
# outline, 1 the background, 2..5 the shapes; reduce_zero_label maps them to 255, 0, 1..4.
classes = ('background', 'circle', 'square', 'triangle', 'star')
palette = [[120, 120, 120], [220, 50, 50], [50, 190, 70], [50, 90, 225], [240, 210, 40]]
metainfo = dict(classes=classes, palette=palette)
num_classes = len(classes)
crop_size = (128, 128)

# Optional: start from the encoder of a demo pretraining (configs/pretrain/addp_vit-tiny_demo.py:
# same 'demo' arch and 16x16 patches; its 64-px position table is resized on load):
#   python tools/train.py THIS_CONFIG --pretrained work_dirs/addp_vit-tiny_demo/backbone.pth
# or set pretrained = 'work_dirs/addp_vit-tiny_demo/backbone.pth' here. None: from scratch.
pretrained = None
patch_size = 16

norm_cfg = dict(type='BN', requires_grad=True)  # one process on a CPU: plain BN, not SyncBN
embed_dims = 64
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='demo',                    # 64 wide, 4 blocks, 4 heads
        patch_size=patch_size,
        img_size=crop_size[0],
        drop_path_rate=0.0,
        out_indices=[0, 1, 2, 3],       # every block feeds one pyramid level
        init_cfg=dict(type='Pretrained', checkpoint=pretrained) if pretrained else None),
    neck=dict(embed_dim=embed_dims, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=[embed_dims] * 4, channels=embed_dims, pool_scales=(1, 2, 3, 6),
                     num_classes=num_classes, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=embed_dims, channels=32, num_classes=num_classes,
                        norm_cfg=norm_cfg),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(85, 85)))

# BaseSegDataset rather than ADE20KDataset: the latter would try to map our class names onto
# ADE's 150 (and fail); the folder layout and the reduce-zero-label convention are ADE's.
dataset_type = 'BaseSegDataset'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=True,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=True,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# CPU: full precision; from scratch a higher lr than the release's 1e-4
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(lr=6e-4, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.9))
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
# a fixed seed: README's demo numbers say which seeds they come from (--cfg-options randomness.seed=N)
randomness = dict(seed=0, deterministic=False)
