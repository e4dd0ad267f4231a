# The release's ImageNet fine-tuning schedule for ViT-B (main_finetune.py; paper): AdamW, weight
# decay 0.05 (none on norms, biases, position / class tokens), layer-wise lr decay 0.65,
# lr = blr x batch / 256 = 1e-3 x 1024 / 256 (--auto-scale-lr rescales it for other total batch
# sizes); 20 warm-up epochs, then cosine to 1e-6 at epoch 100.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3 * 1024 / 256, weight_decay=0.05, eps=1e-8,
                   betas=(0.9, 0.999)),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65))
auto_scale_lr = dict(base_batch_size=1024)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=20, end=100,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()
