# The release's pretraining schedule (main_pretrain.py, configs/release/base/*.sh): AdamW
# (0.9, 0.95), weight decay 0.05, blr 1e-4 x 4096 / 256, 40 warm-up epochs then cosine to 1600
# epochs, gradient clipping 3.0, AMP.
optim_wrapper = dict(
    # release main_pretrain.py: AMP with a dynamic loss scale that grows every 500 finite steps
    # (--amp_growth_interval 500; torch's GradScaler default start 2 ** 16). A non-finite loss
    # skips the step on every rank (as the release under AMP); more than 100 in a row stop
    # training (our limit; addp_mm/engine/optimizers/non_finite_guard.py)
    type='NonFiniteGuardAmpOptimWrapper', loss_scale=dict(init_scale=2. ** 16, growth_interval=500),
    max_consecutive_skips=100,
    # lr = blr 1e-4 x 4096 / 256
    optimizer=dict(type='AdamW', lr=1e-4 * 4096 / 256, betas=(0.9, 0.95), weight_decay=0.05),
    clip_grad=dict(max_norm=3.0),
    # no weight decay on 1-d parameters (norms, biases), as the release; frozen parts left out
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0, no_decay_names=()))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=40, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=1560, by_epoch=True, begin=40, end=1600, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1600)
auto_scale_lr = dict(base_batch_size=4096)
