# Toy downstream (issue 12, README "Training every part yourself"): fine-tune the toy ADDP encoder
# on scikit-learn's handwritten digits with 10% of the training labels (143 images), evaluate on
# the whole val split (359 images). Same schedule from the toy pretraining's backbone.pth and from
# a random initialisation, so the two differ only by the encoder's starting weights.
#
#   python tools/make_demo_data.py data/demo --only digits
#   python tools/train.py configs/toy/vit-toy_digits-32px_finetune-10pct.py \
#       [--pretrained work_dirs/<toy pretraining>/backbone.pth] [--cfg-options randomness.seed=1]
#
# tools/run_toy_pipeline.py runs it through tools/toy_metrics.py:run_downstream (seeds 0, 1, 2).
# Recipe: the demo classification config (= the release's MAE-style end-to-end fine-tune: mean
# of the patch tokens + fc_norm, linear head, label smoothing 0.1, AdamW with layer decay,
# warm-up + cosine) shrunk to 32-px digits and about a minute on 2 CPU cores.
# Measured from a random init (seeds 0, 1, 2): val top-1 59.6 / 65.5 / 61.0 (62.0 +- 3.1),
# 57-68 s a run (start-up included) with OMP_NUM_THREADS=1 on the shared 2-core machine.
_base_ = '../demo/addp-vit-demo_demo-in1k-128px.py'

data_root = 'data/demo/digits'
# None: random initialisation (from scratch); a path: the backbone.pth a pretraining exports
# ({'state_dict': ADDPViT weights, 'meta': ...}; its position table is resized on load).
# tools/train.py --pretrained PATH sets the same init_cfg after the config is read.
backbone_checkpoint = None
classes = tuple(str(d) for d in range(10))   # = data_root/classes.txt (folder names 0..9)
metainfo = dict(classes=classes)
img_size = 32
patch_size = 4

# pixels in [0, 1] as the ADDP pretraining sees them (configs/pretrain/ base: mean 0, std 255);
# a grayscale PNG is loaded as 3 equal channels (mmcv's imread, color_type='color')
data_preprocessor = dict(num_classes=len(classes), mean=[0., 0., 0.], std=[255., 255., 255.],
                         to_rgb=True)

model = dict(
    backbone=dict(
        arch='demo',                    # the toy encoder of the toy pretraining: 64 wide, 4 blocks
        img_size=img_size,
        patch_size=patch_size,          # 8 x 8 patches = the toy tokenizer's 8 x 8 token grid
        pre_norm=True,                  # as pretrained (ADDP's tokenizer_norm after the positions)
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)
        if backbone_checkpoint else None),
    head=dict(num_classes=len(classes), in_channels=64))

# digits are not flip-invariant: no horizontal flip; mild crops only (the 8x8 scans fill the frame)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.6, 1.0),
         aspect_ratio_range=(0.8, 1.25), backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    dataset=dict(data_root=data_root, ann_file='meta/train_10pct.txt', data_prefix='train',
                 metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    dataset=dict(data_root=data_root, ann_file='meta/val.txt', data_prefix='val',
                 metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader

# from scratch and from pretraining alike: AdamW lr 1e-3 (the demo's), weight decay 0.05 and
# layer decay 0.75 (the release's fine-tuning uses 0.65 for ViT-B's 12 blocks; 4 blocks here)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05),
                     paramwise_cfg=dict(layer_decay_rate=0.75))
auto_scale_lr = dict(base_batch_size=32)

# 143 images / 32 = 5 iterations an epoch: 60 epochs = 300 iterations
max_epochs = 60
warmup_epochs = 5
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=20)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1))
# seeds 0, 1, 2 (--cfg-options randomness.seed=N); deterministic kernels (on a GPU
# run_downstream sets CUBLAS_WORKSPACE_CONFIG, which torch then needs)
randomness = dict(seed=0, deterministic=True)
