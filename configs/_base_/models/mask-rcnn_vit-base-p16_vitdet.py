# Mask R-CNN with an ADDP ViT-B/16 backbone in the ViTDet recipe (Li et al., 2022) that the ADDP
# paper uses for detection: mmdet's Mask R-CNN R50-FPN with its backbone, neck and heads changed
# into ViTDet's. mmdet's `projects/ViTDet` port of the same recipe is not part of the pip package;
# the settings it shares with detectron2's ViTDet are restated here.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['addp_mm'], allow_failed_imports=False)

# ViTDet: LayerNorm (over channels) in the pyramid and in the heads
norm_cfg = dict(type='LN2d', requires_grad=True)

model = dict(
    data_preprocessor=dict(
        # every training crop is padded to the 1024x1024 canvas (normalised zeros = mean colour)
        batch_augments=[dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)]),
    backbone=dict(
        _delete_=True,                  # the stock ResNet-50 is replaced, not merged into
        type='ADDPViT',
        arch='base',                    # ViT-B/16: 768 wide, 12 blocks, 12 heads
        img_size=1024,                  # ViTDet: LSJ crops of 1024x1024
        patch_size=16,
        drop_path_rate=0.1,             # ViTDet-B
        window_size=14,                 # ViTDet: 14x14 window attention ...
        window_block_indexes=[0, 1, 3, 4, 6, 7, 9, 10],  # ... except the global blocks 2, 5, 8, 11
        use_rel_pos=True,               # decomposed relative position (zero-init: ADDP has none)
        with_cls_token=False,           # ViTDet drops the class token
        final_norm=False,               # ViTDet has no norm after the last block
        out_type='featmap',             # the last block's stride-16 map feeds the pyramid
        out_indices=-1,
        # the released ADDP ViT-B/16 pretraining file: only the encoder is read, its 16x16
        # position table is resized to the 64x64 grid of a 1024 input
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/addp-vit-base-16.pth')),
    neck=dict(
        _delete_=True,                  # the stock FPN is replaced
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
