# Demo: the ImageNet fine-tuning recipe of configs/imagenet/ (ADDPViT, mean-pooled patch tokens +
# fc_norm, linear head, label smoothing, AdamW with layer decay, warm-up + cosine) shrunk to a
# tiny ViT and the synthetic class-folder data of `tools/make_demo_data.py` (4 shape classes).
#
#   python tools/make_demo_data.py data/demo
#   python tools/train.py configs/demo/addp-vit-demo_demo-in1k-128px.py
#   python tools/test.py  configs/demo/addp-vit-demo_demo-in1k-128px.py \
#       work_dirs/addp-vit-demo_demo-in1k-128px/epoch_30.pth
#
# Target (issue 6): top-1 >= 0.8 on the demo val split after <= 15 minutes on 2 CPU cores.
_base_ = '../imagenet/addp-vit-base-p16_8xb128-coslr-100e_in1k-256px.py'

data_root = 'data/demo/imagenet/'
# = tools/demo_data.py: IMAGENET_DEMO_CLASSES (also data_root/classes.txt)
classes = ('circle', 'square', 'triangle', 'star')
metainfo = dict(classes=classes)
img_size = 128
data_preprocessor = dict(num_classes=len(classes))

# Optional: start from the encoder of a demo pretraining (configs/pretrain/addp_vit-tiny_demo.py:
# same 'demo' arch and 16x16 patches; its 64-px position table is resized on load):
#   python tools/train.py THIS_CONFIG --pretrained work_dirs/addp_vit-tiny_demo/backbone.pth
# or set pretrained = 'work_dirs/addp_vit-tiny_demo/backbone.pth' here. None: from scratch.
pretrained = None
patch_size = 16

model = dict(
    backbone=dict(
        arch='demo',                    # 64 wide, 4 blocks, 4 heads
        patch_size=patch_size,
        img_size=img_size,
        drop_path_rate=0.0,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained) if pretrained else None),
    head=dict(num_classes=len(classes), in_channels=64),
    # no mixup / cutmix: with 240 training images and a few minutes they slow learning down more
    # than they regularise
    train_cfg=None)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.35, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
# mmpretrain's CustomDataset reads the class folders through meta/{train,val}.txt
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='train',
        metainfo=metainfo,
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        ann_file='meta/val.txt',
        data_prefix='val',
        metainfo=metainfo,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

# from scratch: a higher lr than the release's, mild layer decay
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05),
                     paramwise_cfg=dict(layer_decay_rate=0.9))
auto_scale_lr = dict(base_batch_size=32)

max_epochs = 30
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=5, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1))
# a fixed seed: README's demo numbers are means over seeds 0, 1, 2 (--cfg-options randomness.seed=N)
randomness = dict(seed=0, deterministic=False)
