# Step 2 of the toy chain (docs/user_guides/train_every_part.md): the MAGETokenPredictor trained
# with MAGE's masked-token objective on the codes of the frozen tokenizer of step 1.
#
#   python tools/train.py configs/toy/mage-token-trainer_mage-toy_1xb32-2k_digits-32px.py \
#       --cfg-options model.tokenizer.checkpoint=TOKENIZER_FILE
#   -> work_dirs/mage-token-trainer_mage-toy_1xb32-2k_digits-32px/token_predictor.pth
#      (MAGETokenPredictor(checkpoint=...) loads it)
_base_ = [
    '../_base_/datasets/digits_unlabeled-32px.py',
    '../_base_/part_training_runtime.py',
    '../_base_/schedules/adamw_fp32-guard_iter.py',
]
custom_imports = dict(imports=['addp_mm'], allow_failed_imports=False)

model = dict(
    type='MAGETokenTrainer',
    # the tokenizer of step 1 (same sizes), frozen
    tokenizer=dict(type='VQGANTokenizer', ch=32, ch_mult=[1, 1, 2], num_res_blocks=1,
                   z_channels=32, n_embed=128, embed_dim=32, resolution=32,
                   checkpoint='work_dirs/vq-autoencoder_vqgan-toy_1xb32-1k_digits-32px/tokenizer.pth',
                   precision='fp32', encode_precision='fp32'),
    # ours: a 2+1-block 64-wide MAGE (MAGE ViT-B: 12+8 blocks, 768 wide); codebook and 8x8 grid
    # come from the tokenizer
    token_predictor=dict(type='MAGETokenPredictor', embed_dim=64, depth=2, num_heads=4,
                         decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=4,
                         attn_fp32=False, precision='fp32'),
    # MAGE main_pretrain.py: mask ratio ~ truncnorm on [0.5, 1.0], mu 0.55, std 0.25;
    # LabelSmoothingCrossEntropy(0.1) on the masked tokens
    min_ratio=0.5, max_ratio=1.0, mu=0.55, std=0.25, label_smoothing=0.1)

# MAGE: AdamW (0.9, 0.95), wd 0.05 (_base_/schedules/adamw_fp32-guard_iter.py), warm-up then
# cosine; lr ours (tiny model, batch 32)
max_iters = 2000  # = tools/run_toy_pipeline.py's default
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min_ratio=0.05),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
custom_hooks = [dict(type='ExportPartHook', part='token_predictor', filename='token_predictor.pth')]
default_hooks = dict(logger=dict(type='LoggerHook', interval=50),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                                     max_keep_ckpts=1))
