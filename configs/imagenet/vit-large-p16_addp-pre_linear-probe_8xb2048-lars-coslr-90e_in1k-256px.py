# ImageNet-1k linear probing of the ADDP ViT-L/16 encoder: the ViT-B recipe of
# vit-base-p16_addp-pre_linear-probe_8xb2048-lars-coslr-90e_in1k-256px.py (the MAE protocol as
# mmpretrain ships it) at ViT-L's size, as mmpretrain's vit-large-p16_8xb2048-linear-coslr-90e_in1k.py
# differs from its ViT-B one: the arch, all 24 blocks frozen, 1024-wide BN and head.
#
#   python tools/train.py configs/imagenet/vit-large-p16_addp-pre_linear-probe_8xb2048-lars-coslr-90e_in1k-256px.py
_base_ = './vit-base-p16_addp-pre_linear-probe_8xb2048-lars-coslr-90e_in1k-256px.py'

model = dict(
    backbone=dict(
        arch='large',
        frozen_stages=24,               # every block, the embeddings and the final norm
        init_cfg=dict(checkpoint='checkpoints/addp-vit-large-16.pth')),
    neck=dict(input_features=1024),
    head=dict(in_channels=1024))
