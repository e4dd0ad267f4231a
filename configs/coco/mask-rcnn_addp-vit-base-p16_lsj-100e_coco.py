# Mask R-CNN with an ADDP ViT-B/16 backbone on COCO, in the ViTDet recipe (Li et al., 2022) that
# the ADDP paper uses for detection. Paper (ADDP, ICLR 2024, downstream results table): AP box 51.7.
#
#   python tools/train.py configs/coco/mask-rcnn_addp-vit-base-p16_lsj-100e_coco.py
#   python tools/test.py  configs/coco/mask-rcnn_addp-vit-base-p16_lsj-100e_coco.py CKPT
#
# Built on mmdet's own bases: the Mask R-CNN R50-FPN model (whose backbone, neck and heads are
# changed below into ViTDet's) and mmdet's large-scale-jitter 100-epoch COCO schedule. mmdet's
# `projects/ViTDet` port of the same recipe is not part of the pip package; the settings it
# shares with detectron2's ViTDet are restated here.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::common/lsj-100e_coco-instance.py',
]
custom_imports = dict(imports=['addp_mm'], allow_failed_imports=False)

# the released ADDP ViT-B/16 checkpoint (pretraining file as released; only the encoder is read,
# its 16x16 position table is resized to the 64x64 grid of a 1024 input)
pretrained = 'checkpoints/addp-vit-base-16.pth'

image_size = (1024, 1024)  # ViTDet: LSJ crops of 1024x1024
# ViTDet: LayerNorm (over channels) in the pyramid and in the heads
norm_cfg = dict(type='LN2d', requires_grad=True)

model = dict(
    data_preprocessor=dict(
        # every training crop is padded to the 1024x1024 canvas (normalised zeros = mean colour)
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(
        _delete_=True,
        type='ADDPViT',
        arch='base',                    # ViT-B/16: 768 wide, 12 blocks, 12 heads
        img_size=1024,
        patch_size=16,
        drop_path_rate=0.1,             # ViTDet-B
        window_size=14,                 # ViTDet: 14x14 window attention ...
        window_block_indexes=[0, 1, 3, 4, 6, 7, 9, 10],  # ... except the global blocks 2, 5, 8, 11
        use_rel_pos=True,               # decomposed relative position (zero-init: ADDP has none)
        with_cls_token=False,           # ViTDet drops the class token
        final_norm=False,               # ViTDet has no norm after the last block
        out_type='featmap',             # the last block's stride-16 map feeds the pyramid
        out_indices=-1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        _delete_=True,
        type='SimpleFPN',               # ViTDet's simple pyramid: strides 4, 8, 16, 32 (+ 64)
        in_channels=768,
        out_channels=256,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        num_outs=5,
        norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),         # ViTDet: two 3x3 convs in the RPN head
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead',  # ViTDet: 4 convs + 1 fc box head, LayerNorm after convs
            conv_out_channels=256,
            norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))  # 4-conv mask head with LayerNorm

# ViTDet evaluates at the training canvas: longer side resized to 1024, padded to 1024x1024 with
# the mean colour (BGR order here, as the images are loaded)
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(103.53, 116.28, 123.675))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# CocoMetric with metric=['bbox', 'segm'] comes from the base: AP box is the paper's number

# 64 images per step (as ViTDet; e.g. 16 GPUs x 4). Other layouts: tools/train.py --auto-scale-lr
train_dataloader = dict(batch_size=4, num_workers=4)
auto_scale_lr = dict(base_batch_size=64)

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',             # ViTDet trains in mixed precision
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.7,           # ViTDet-B layer-wise lr decay
        # ViTDet's weight-decay exemptions (detectron2 configs/common/optim.py AdamW:
        # weight_decay_norm=0.0; ViTDet mask_rcnn_vitdet_b_100ep.py: overrides pos_embed 0.0):
        # none on the backbone's LayerNorms and pos_embed; biases and relative-position tables
        # are decayed. The channel LayerNorms of the pyramid and heads are decayed too: detectron2's
        # norm rule only catches torch.nn norm classes and its channel LN is its own class.
        no_decay_names=('backbone.pos_embed', ),
        norm_decay_mult=0.0, bias_decay_mult=1.0, flat_decay_mult=1.0,
        custom_keys={'neck.': dict(decay_mult=1.0), 'roi_head.': dict(decay_mult=1.0)}),
    # ViTDet-B: AdamW, lr 1e-4 for a batch of 64, betas (0.9, 0.999), weight decay 0.1
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1))

# 100 epochs: the base runs 25 epochs over the train set repeated 4 times. ViTDet: linear
# warm-up over the first 250 iterations, lr x0.1 at epochs 88 and 96 (= base epochs 22 and 24)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=25, by_epoch=True, milestones=[22, 24], gamma=0.1),
]
