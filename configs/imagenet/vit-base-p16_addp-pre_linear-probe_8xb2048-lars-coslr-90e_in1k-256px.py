# ImageNet-1k linear probing of the ADDP ViT-b/16 encoder: the MAE protocol as mmpretrain ships it
# (mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py): the encoder frozen, a BatchNorm
# without affine parameters (ClsBatchNormNeck) and a linear head, LARS lr 6.4 for a batch of 16384
# (base lr 0.1 x 16384 / 256), momentum 0.9, no weight decay, 10 warm-up + 80 cosine epochs, AMP.
# The paper reports no linear-probing number; this is the protocol for comparing encoders.
#
#   python tools/train.py configs/imagenet/vit-base-p16_addp-pre_linear-probe_8xb2048-lars-coslr-90e_in1k-256px.py
#
# The demo version trains on scikit-learn's digits in 30 s on a CPU:
# configs/toy/vit-demo-p4_linear-probe_1xb64-15e_digits-32px.py (tests/test_toy_metrics.py).
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py'
custom_imports = dict(imports=['addp_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,                  # mmpretrain's ViT is replaced by the ADDP encoder
        type='ADDPViT',
        arch='base',
        img_size=256,                   # the resolution ADDP was pretrained at
        patch_size=16,
        frozen_stages=12,                # every block, the embeddings and the final norm
        pre_norm=True,                  # the encoder as pretrained (the release's tokenizer_norm)
        final_norm=True,
        # MAE probes the class token; ADDP's features are the mean of the patch tokens (the
        # release's classifier), normalised by fc_norm (its affine part is undone by the BN)
        out_type='avg_featmap',
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/addp-vit-base-16.pth')),
    neck=dict(input_features=768),
    head=dict(in_channels=768))

# 256 px: random-resized crops for training; evaluation as the release's (util/datasets.py, crop
# ratio 1.0 above 224 px): the short side to 256 and the centre 256 crop
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=256, backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=256),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
