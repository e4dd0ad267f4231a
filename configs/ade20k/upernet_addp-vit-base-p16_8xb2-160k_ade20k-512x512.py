# UperNet with an ADDP ViT-B/16 backbone on ADE20K (150 classes), following the MAE / BEiT
# segmentation protocol that mmseg ships for MAE. Paper (ADDP, ICLR 2024, downstream results table):
# mIoU 48.1 (single scale).
#
#   python tools/train.py configs/ade20k/upernet_addp-vit-base-p16_8xb2-160k_ade20k-512x512.py
#   python tools/test.py  configs/ade20k/upernet_addp-vit-base-p16_8xb2-160k_ade20k-512x512.py CKPT
#
# Built on mmseg's own bases: the UperNet-for-plain-ViT model (Feature2Pyramid + UPerHead + FCN
# auxiliary head), the ADE20K 512x512 pipeline, the default runtime and the 160k schedule.
_base_ = [
    'mmseg::_base_/models/upernet_mae.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['addp_mm'], allow_failed_imports=False)

# the released ADDP ViT-B/16 checkpoint (only the encoder is read; its position table is resized
# from the 16x16 grid of pretraining to the 32x32 grid of a 512 crop)
pretrained = 'checkpoints/addp-vit-base-16.pth'

crop_size = (512, 512)  # protocol: 512x512 crops
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='ADDPViT',
        arch='base',
        img_size=512,
        patch_size=16,
        drop_path_rate=0.1,             # MAE / BEiT ViT-B segmentation
        out_indices=[3, 5, 7, 11],      # four blocks feed the four pyramid levels
        out_type='featmap',
        with_cls_token=True,            # global attention everywhere, the class token as pretrained
        final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    # mmseg's Feature2Pyramid: the four stride-16 maps rescaled by 4, 2, 1, 0.5 (strides 4 ... 32)
    neck=dict(embed_dim=768, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768, 768, 768, 768], channels=768, num_classes=150),
    auxiliary_head=dict(in_channels=768, num_classes=150),
    # sliding-window inference with 512x512 windows, 2/3 overlap stride (protocol)
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# 16 images per step: 8 GPUs x 2 (protocol). Other layouts: tools/train.py --auto-scale-lr
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',             # mixed precision, as mmseg's MAE / BEiT configs
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65),  # MAE / BEiT ViT-B segmentation layer decay
    # AdamW, lr 1e-4, weight decay 0.05 (none on norms, biases, position / class tokens)
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))

# linear warm-up over 1.5k iterations, then poly (power 1) decay to 0 at 160k iterations
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1500, end=160000),
]
# 160k iterations and IoUMetric (mIoU) on the 2000 validation images come from the bases
