# The optimizer of the demo and toy trainings on a CPU (configs/pretrain/*demo*, configs/toy/
# addp_*, mage-token-trainer_*): float32, and a non-finite loss stops training on every rank
# (max_consecutive_skips=0); AdamW with the ADDP / MAGE releases' betas, weight decay and gradient
# clipping, a higher lr for the tiny models, no layer decay; the frozen parts stay out of it
# (LayerDecayOptimWrapperConstructor takes only parameters that require grad). The schedule is
# the config's.
optim_wrapper = dict(type='NonFiniteGuardOptimWrapper', max_consecutive_skips=0,
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05),
                     clip_grad=dict(max_norm=3.0),
                     constructor='LayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay_rate=1.0, no_decay_names=()))
