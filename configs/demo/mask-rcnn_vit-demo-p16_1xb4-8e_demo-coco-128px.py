# Demo: the COCO Mask R-CNN recipe of configs/coco/ (ViTDet-style ADDPViT with window attention,
# relative position, SimpleFPN, LayerNorm heads, layer decay) shrunk to a tiny ViT and the
# synthetic COCO-format data of `tools/make_demo_data.py`, so that it trains on a laptop CPU in
# a few minutes, from scratch (or from a demo pretraining: --pretrained FILE).
#
#   python tools/make_demo_data.py data/demo
#   python tools/train.py configs/demo/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py
#   python tools/test.py  configs/demo/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py \
#       work_dirs/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px/epoch_8.pth
_base_ = [
    '../_base_/models/mask-rcnn_vit-base-p16_vitdet.py',
    '../_base_/datasets/demo_coco-128px.py',
    'mmdet::_base_/default_runtime.py',
]

channels = 64  # pyramid / head width (256 in the release config)
model = dict(
    data_preprocessor=dict(
        batch_augments=[dict(type='BatchFixedSizePad', size=(128, 128), pad_mask=True)]),
    backbone=dict(
        arch='demo',                    # 64 wide, 4 blocks, 4 heads, 16x16 patches
        img_size=128,
        drop_path_rate=0.0,
        window_size=4,                  # 8x8 patch grid: 4x4 windows in blocks 0 and 2,
        window_block_indexes=[0, 2],    # global attention in blocks 1 and 3
        # from scratch; tools/train.py --pretrained work_dirs/<demo pretraining>/backbone.pth
        # starts from a demo pretraining's encoder (its 64-px position table is resized on load)
        init_cfg=None),
    neck=dict(in_channels=64, out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(in_channels=channels, conv_out_channels=channels, fc_out_channels=256,
                       num_classes=4),
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(in_channels=channels, conv_out_channels=channels, num_classes=4)),
    # fewer proposals and sampled RoIs than COCO needs (at most 3 objects per image)
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))

# ViTDet's optimizer on a CPU: full precision; from scratch a higher lr than the release's
# fine-tuning 1e-4, and a mild layer decay (meant for a pretrained backbone; harmless from scratch)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=4e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.9,
        no_decay_names=('backbone.pos_embed', ),
        norm_decay_mult=0.0, bias_decay_mult=1.0, flat_decay_mult=1.0,
        custom_keys={'neck.': dict(decay_mult=1.0), 'roi_head.': dict(decay_mult=1.0)}),
    clip_grad=dict(max_norm=10.0))
auto_scale_lr = dict(base_batch_size=4)

max_epochs = 8  # ~0.6 s per iteration of 4 images on 2 cores: ~4 min
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[6, 7], gamma=0.1),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False)
# a fixed seed: the demo numbers say which seeds they come from (--cfg-options randomness.seed=N)
randomness = dict(seed=0, deterministic=False)
