# ViTDet's COCO recipe around a model (detectron2 projects/ViTDet, mask_rcnn_vitdet_b_100ep.py):
# mmdet's large-scale-jitter 100-epoch COCO instance schedule (1024x1024 crops, data, loops,
# runtime) with ViTDet's optimizer and lr schedule and evaluation at the training canvas.
_base_ = 'mmdet::common/lsj-100e_coco-instance.py'

image_size = (1024, 1024)
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

# ViTDet-B's optimizer: AdamW lr 1e-4 for a batch of 64, betas (0.9, 0.999), weight decay 0.1,
# layer-wise lr decay 0.7, mixed precision. Weight-decay exemptions as ViTDet (detectron2
# configs/common/optim.py AdamW: weight_decay_norm=0.0; mask_rcnn_vitdet_b_100ep.py: overrides
# pos_embed 0.0): none on the backbone's LayerNorms and pos_embed; biases and relative-position
# tables are decayed. The channel LayerNorms of the pyramid and heads are decayed too:
# detectron2's norm rule only catches torch.nn norm classes and its channel LN is its own class.
optim_wrapper = dict(
    _delete_=True,                      # mmdet's SGD wrapper is replaced
    type='AmpOptimWrapper',             # ViTDet trains in mixed precision
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.7,           # ViTDet-B layer-wise lr decay
        no_decay_names=('backbone.pos_embed', ),
        norm_decay_mult=0.0, bias_decay_mult=1.0, flat_decay_mult=1.0,
        custom_keys={'neck.': dict(decay_mult=1.0), 'roi_head.': dict(decay_mult=1.0)}),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1))

# 100 epochs: the base runs 25 epochs over the train set repeated 4 times. ViTDet: linear
# warm-up over the first 250 iterations, lr x0.1 at epochs 88 and 96 (= base epochs 22 and 24)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=25, by_epoch=True, milestones=[22, 24], gamma=0.1),
]
