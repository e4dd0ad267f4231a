# An ImageNet classifier on the ADDP ViT-B/16 encoder, as the release's fine-tuning
# (models_vit.py, global_pool='avg'): mean of the patch tokens + fc_norm, a linear head. The
# encoder starts from the released pretraining file (only the encoder is read; set
# model.backbone.init_cfg.checkpoint, or tools/train.py --pretrained FILE).
custom_imports = dict(imports=['addp_mm'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ADDPViT',
        arch='base',                    # ViT-B/16: 768 wide, 12 blocks, 12 heads
        img_size=256,                   # paper: input 256
        patch_size=16,
        drop_path_rate=0.1,             # paper, ViT-B
        with_cls_token=True,
        out_type='avg_featmap',         # release classifier: mean of the patch tokens + fc_norm
        final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/addp-vit-base-16.pth')),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),  # smoothing 0.1
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=2e-5)]),  # MAE-style head init
    # paper: mixup 0.8, cutmix 1.0 (one of the two per batch)
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
