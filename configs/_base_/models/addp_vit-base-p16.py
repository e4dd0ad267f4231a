# ADDP pretraining model with the release's ViT-B/16 sizes (models_addp.py, configs/release/base):
# the pixel encoder, the token decoder, the soft-target loss and the frozen noising process
# (MAGE's VQGAN tokenizer and ViT-B token predictor, the mask schedule). The frozen parts' files
# are the nested keys below (MAGE release; nothing is downloaded, docs/user_guides/weights.md): set them
# there, e.g. --cfg-options model.target_generator.tokenizer.checkpoint=PATH.
custom_imports = dict(imports=['addp_mm'], allow_failed_imports=False)

model = dict(
    type='ADDP',
    # the pixel encoder: ViT-B/16 with the release's tokenizer_norm (pre_norm) and dropout 0.1;
    # release models_addp.py: attention logits and softmax in float32 under AMP, Linear layers
    # initialised Xavier-uniform (_init_weights)
    backbone=dict(type='ADDPViT', arch='base', img_size=256, patch_size=16, pre_norm=True,
                  final_norm=True, out_type='raw', drop_rate=0.1, attn_drop_rate=0.1,
                  attn_fp32=True, init_mode='release'),
    # the token decoder of the release: 8 blocks, 16 heads, as wide as the encoder, float32
    # attention; its width, token grid and codebook come from the backbone and the tokenizer
    neck=dict(type='ADDPDecoder', depth=8, num_heads=16, drop=0.1, attn_fp32=True),
    head=dict(type='ADDPSoftTargetLoss', label_smoothing=0.1),
    # the frozen noising process
    target_generator=dict(
        type='ADDPNoiser',
        # ours: the frozen parts run their inference forms (layouts, in-place and fused sums;
        # exact in fp32, docs/advanced_guides/performance.md); False keeps the reference modules
        inference_form=True,
        # the frozen parts' precision in a pretraining step: under mixed precision the release's
        # (every part follows the AMP dtype: fp16 with the loss scaler on CUDA, bf16 on a CPU),
        # without it ours (the VQ encoder in fp32, the VQ decoder and the token predictor in
        # bf16 where native): addp_mm/models/utils/precision.py, docs/advanced_guides/performance.md
        precision='auto',
        # MAGE's VQGAN: 1024 codes of 256-d, 256x256 -> 16x16
        tokenizer=dict(type='VQGANTokenizer', ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2,
                       z_channels=256, n_embed=1024, embed_dim=256, resolution=256,
                       checkpoint='checkpoints/vqgan_jax_strongaug.ckpt',
                       # ours, generation's VQ decoder: bf16 where the hardware runs it natively
                       precision='auto'),
        # MAGE ViT-B token predictor (codebook and grid from the tokenizer)
        token_predictor=dict(type='MAGETokenPredictor', embed_dim=768, depth=12, num_heads=12,
                             decoder_embed_dim=768, decoder_depth=8, decoder_num_heads=16,
                             checkpoint='checkpoints/mage-vitb-1600.pth', attn_fp32=True),
        # the release: cosine schedule at 100 steps, ratios in [0.5, 1), truncnorm(0.55, 0.25)
        # weights, next state 1..5 steps further
        mask_schedule=dict(type='MaskSchedule', num_steps=100, min_ratio=0.5, max_ratio=1.0,
                           mu=0.55, std=0.25, max_step_gap=5)))
