# Demo: the COCO Mask R-CNN recipe of configs/coco/ (ViTDet-style ADDPViT with window attention,
# relative position, SimpleFPN, LayerNorm heads, layer decay) shrunk to a tiny ViT and the
# synthetic COCO-format data of `tools/make_demo_data.py`, so that it trains on a laptop CPU.
#
#   python tools/make_demo_data.py data/demo
#   python tools/train.py configs/demo/mask-rcnn_addp-vit-demo_demo-coco.py
#   python tools/test.py  configs/demo/mask-rcnn_addp-vit-demo_demo-coco.py \
#       work_dirs/mask-rcnn_addp-vit-demo_demo-coco/epoch_8.pth
#
# Target (issue 6): bbox mAP >= 0.2 on the demo val split after <= 15 minutes on 2 CPU cores.
_base_ = '../coco/mask-rcnn_addp-vit-base-p16_lsj-100e_coco.py'

data_root = 'data/demo/coco/'
# = tools/demo_data.py: COCO_DEMO_CLASSES (category ids 1..4 in the json files)
classes = ('circle', 'square', 'triangle', 'star')
metainfo = dict(classes=classes)
image_size = (128, 128)  # the demo images are 128x128

# Optional: start from the encoder of a demo pretraining (configs/pretrain/addp_vit-tiny_demo.py:
# same 'demo' arch and 16x16 patches; its 64-px position table is resized on load):
#   python tools/train.py THIS_CONFIG --pretrained work_dirs/addp_vit-tiny_demo/backbone.pth
# or set pretrained = 'work_dirs/addp_vit-tiny_demo/backbone.pth' here. None: from scratch.
pretrained = None

norm_cfg = dict(type='LN2d', requires_grad=True)
num_classes = len(classes)
channels = 64  # pyramid / head width (256 in the release config)

model = dict(
    data_preprocessor=dict(
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(
        arch='demo',                    # 64 wide, 4 blocks, 4 heads
        img_size=image_size[0],
        drop_path_rate=0.0,
        window_size=4,                  # 8x8 patch grid: 4x4 windows in blocks 0 and 2,
        window_block_indexes=[0, 2],    # global attention in blocks 1 and 3
        init_cfg=dict(type='Pretrained', checkpoint=pretrained) if pretrained else None),
    neck=dict(in_channels=64, out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(in_channels=channels, conv_out_channels=channels, fc_out_channels=256,
                       num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(in_channels=channels, conv_out_channels=channels, num_classes=num_classes)),
    # fewer proposals and sampled RoIs than COCO needs (at most 3 objects per image)
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))

# mild scale jitter (0.5-1.5 instead of 0.1-2.0) on the 128x128 canvas
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        times=1,                        # no repeat: 1 epoch = the 200 demo training images
        dataset=dict(
            data_root=data_root,
            metainfo=metainfo,
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),
            filter_cfg=dict(filter_empty_gt=True, min_size=8),
            pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# CPU: full precision. From scratch a higher lr than the release's fine-tuning 1e-4, and a mild
# layer decay (meant for a pretrained backbone; harmless from scratch).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(lr=4e-4, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=0.9),
    clip_grad=dict(max_norm=10.0))
auto_scale_lr = dict(base_batch_size=4)

max_epochs = 8  # ~0.6 s per iteration of 4 images on 2 cores: ~4 min
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[6, 7], gamma=0.1),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False)
# a fixed seed: README's demo numbers say which seeds they come from (--cfg-options randomness.seed=N)
randomness = dict(seed=0, deterministic=False)
