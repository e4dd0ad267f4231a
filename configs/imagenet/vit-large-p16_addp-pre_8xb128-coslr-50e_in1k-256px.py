# ImageNet-1k fine-tuning of the ADDP ViT-L/16 encoder at 256x256. Paper (ADDP, ICLR 2024,
# downstream results table): top-1 85.9. Everything not restated here is the ViT-B config's (same recipe).
_base_ = './vit-base-p16_addp-pre_8xb128-coslr-100e_in1k-256px.py'

model = dict(
    backbone=dict(
        arch='large',                   # ViT-L/16: 1024 wide, 24 blocks, 16 heads
        drop_path_rate=0.2,             # paper, ViT-L
        init_cfg=dict(checkpoint='checkpoints/addp-vit-large-16.pth')),  # the released ADDP ViT-L/16
    head=dict(in_channels=1024))

# paper, ViT-L: blr 2.5e-4 -> lr 2.5e-4 x 1024 / 256 = 1e-3 at batch 1024; layer decay 0.8
optim_wrapper = dict(optimizer=dict(lr=2.5e-4 * 1024 / 256),
                     paramwise_cfg=dict(layer_decay_rate=0.8))

# paper, ViT-L: 5 warm-up epochs, 50 epochs
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=5, end=50,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=50)
