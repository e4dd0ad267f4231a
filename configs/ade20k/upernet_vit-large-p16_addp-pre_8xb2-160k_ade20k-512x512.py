# UperNet with an ADDP ViT-L/16 backbone on ADE20K. Paper (ADDP, ICLR 2024, downstream results table):
# mIoU 54.3. Everything not restated here is the ViT-B config's (same protocol).
_base_ = './upernet_vit-base-p16_addp-pre_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='large',                   # ViT-L/16: 1024 wide, 24 blocks, 16 heads
        drop_path_rate=0.2,             # as mmseg's BEiT-L UperNet
        out_indices=[7, 11, 15, 23],    # the usual ViT-L taps (BEiT-L / MAE-L UperNet)
        init_cfg=dict(checkpoint='checkpoints/addp-vit-large-16.pth')),  # the released ADDP ViT-L/16
    neck=dict(embed_dim=1024),
    decode_head=dict(in_channels=[1024, 1024, 1024, 1024], channels=1024),
    auxiliary_head=dict(in_channels=1024))

# Layer decay for ViT-L: our choice, the paper gives no per-size value for segmentation. With 24
# blocks the ViT-B rate would starve the early blocks (0.65 ** 25 ~ 2e-5 of the head lr); the
# published ViT-L recipes use a higher rate (BEiT-L UperNet 0.95; ImageNet fine-tuning of MAE-L
# 0.75 and of ADDP-L 0.8).
# 0.9 gives the patch embedding ~7% of the head lr (ViT-B at 0.65: ~0.4%); lr stays 1e-4.
optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.9))
