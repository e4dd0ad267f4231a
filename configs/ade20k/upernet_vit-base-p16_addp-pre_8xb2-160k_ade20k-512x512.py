# UperNet with an ADDP ViT-B/16 backbone on ADE20K (150 classes), following the MAE / BEiT
# segmentation protocol that mmseg ships for MAE. Paper (ADDP, ICLR 2024, downstream results table):
# mIoU 48.1 (single scale).
#
#   python tools/train.py configs/ade20k/upernet_vit-base-p16_addp-pre_8xb2-160k_ade20k-512x512.py
#   python tools/test.py  configs/ade20k/upernet_vit-base-p16_addp-pre_8xb2-160k_ade20k-512x512.py CKPT
#
# mmseg's own bases: the ADE20K 512x512 pipeline, the default runtime and the 160k schedule.
_base_ = [
    '../_base_/models/upernet_vit-base-p16_addp.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]

crop_size = (512, 512)  # protocol: 512x512 crops
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    # sliding-window inference with 512x512 windows, 2/3 overlap stride (protocol)
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# 16 images per step: 8 GPUs x 2 (protocol). Other layouts: tools/train.py --auto-scale-lr
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)

optim_wrapper = dict(
    _delete_=True,                      # the base schedule's SGD is replaced
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
