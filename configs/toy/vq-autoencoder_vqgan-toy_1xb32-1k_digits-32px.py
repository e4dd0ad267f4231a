# Step 1 of the toy chain (docs/user_guides/train_every_part.md): the VQGANTokenizer architecture
# trained as a VQ autoencoder on scikit-learn's handwritten digits
# (python tools/make_demo_data.py data/demo --only digits).
#
#   python tools/train.py configs/toy/vq-autoencoder_vqgan-toy_1xb32-1k_digits-32px.py
#   -> work_dirs/vq-autoencoder_vqgan-toy_1xb32-1k_digits-32px/tokenizer.pth
#      (VQGANTokenizer(checkpoint=...) loads it)
#
# Sizes are ours (MAGE's VQGAN: ch 128, ch_mult [1,1,2,2,4], 1024 codes of 256-d, 256 px -> 16x16):
# downsampling by 4 (ch_mult of length 3) so that 32 px give the 8x8 grid of the toy encoder
# ADDPViT(arch='demo', img_size=32, patch_size=4). The token-trainer and ADDP toy configs repeat
# these sizes (their checkpoints load strictly).
_base_ = [
    '../_base_/datasets/digits_unlabeled-32px.py',
    '../_base_/part_training_runtime.py',
]
custom_imports = dict(imports=['addp_mm'], allow_failed_imports=False)

model = dict(
    type='VQAutoencoder',
    tokenizer=dict(type='VQGANTokenizer', ch=32, ch_mult=[1, 1, 2], num_res_blocks=1,
                   z_channels=32, n_embed=128, embed_dim=32, resolution=32,
                   precision='fp32', encode_precision='fp32'),
    # VQ-VAE / taming: commitment beta 0.25, codebook loss weight 1
    beta=0.25, codebook_weight=1.0,
    # ours: dead codes replaced by encoder outputs every 50 steps (more of the codebook used;
    # docs/user_guides/train_every_part.md)
    restart_dead_codes=True, restart_interval=50, restart_threshold=1.0, usage_decay=0.99)

# ours (small model, small data): Adam 1e-3 with warm-up and cosine decay, no weight decay
max_iters = 1000  # = tools/run_toy_pipeline.py's default
optim_wrapper = dict(type='NonFiniteGuardOptimWrapper', max_consecutive_skips=0,
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0),
                     clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min_ratio=0.05),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
custom_hooks = [dict(type='ExportPartHook', part='tokenizer', filename='tokenizer.pth')]
default_hooks = dict(logger=dict(type='LoggerHook', interval=50),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                                     max_keep_ckpts=1))
