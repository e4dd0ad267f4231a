# UperNet on the ADDP ViT-B/16 encoder, the MAE / BEiT segmentation protocol that mmseg ships for
# MAE (upernet_mae.py: four encoder taps -> Feature2Pyramid -> UPerHead + FCN auxiliary head).
_base_ = 'mmseg::_base_/models/upernet_mae.py'
custom_imports = dict(imports=['addp_mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,                  # mmseg's MAE ViT is replaced, not merged into
        type='ADDPViT',
        arch='base',                    # ViT-B/16: 768 wide, 12 blocks, 12 heads
        img_size=512,
        patch_size=16,
        drop_path_rate=0.1,             # MAE / BEiT ViT-B segmentation
        out_indices=[3, 5, 7, 11],      # four blocks feed the four pyramid levels
        out_type='featmap',
        with_cls_token=True,            # global attention everywhere, the class token as pretrained
        final_norm=False,
        # the released ADDP ViT-B/16 pretraining file: only the encoder is read, its position
        # table is resized from the 16x16 grid of pretraining to the 32x32 grid of a 512 crop
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/addp-vit-base-16.pth')),
    # mmseg's Feature2Pyramid: the four stride-16 maps rescaled by 4, 2, 1, 0.5 (strides 4 ... 32)
    neck=dict(embed_dim=768, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768, 768, 768, 768], channels=768, num_classes=150),
    auxiliary_head=dict(in_channels=768, num_classes=150))
