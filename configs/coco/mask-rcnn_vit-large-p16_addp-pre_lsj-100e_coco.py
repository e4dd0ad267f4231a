# Mask R-CNN with an ADDP ViT-L/16 backbone on COCO, ViTDet recipe. Paper (ADDP, ICLR 2024,
# downstream results table): AP box 54.6. Everything not restated here is the ViT-B config's (same recipe).
_base_ = './mask-rcnn_vit-base-p16_addp-pre_lsj-100e_coco.py'

model = dict(
    backbone=dict(
        arch='large',                   # ViT-L/16: 1024 wide, 24 blocks, 16 heads
        drop_path_rate=0.4,             # ViTDet-L
        # ViTDet-L: 14x14 windows everywhere except the global blocks 5, 11, 17, 23
        window_block_indexes=[0, 1, 2, 3, 4, 6, 7, 8, 9, 10,
                              12, 13, 14, 15, 16, 18, 19, 20, 21, 22],
        init_cfg=dict(checkpoint='checkpoints/addp-vit-large-16.pth')),  # the released ADDP ViT-L/16
    neck=dict(in_channels=1024))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.8))  # ViTDet-L layer-wise lr decay
