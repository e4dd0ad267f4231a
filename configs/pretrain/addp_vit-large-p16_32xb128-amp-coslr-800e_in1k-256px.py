# ADDP pretraining of ViT-L/16: the ViT-B recipe with ViT-L sizes and 800 epochs (the release's,
# configs/release/large/*.sh).
_base_ = './addp_vit-base-p16_32xb128-amp-coslr-1600e_in1k-256px.py'

model = dict(
    # ViT-L: the decoder follows the encoder's width 1024 (8 blocks, 16 heads, as for ViT-B)
    backbone=dict(arch='large'),
    # MAGE ViT-L token predictor
    target_generator=dict(
        token_predictor=dict(embed_dim=1024, depth=24, num_heads=16, decoder_embed_dim=1024,
                             decoder_depth=8, decoder_num_heads=16,
                             checkpoint='checkpoints/mage-vitl-1600.pth')))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=40, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=760, by_epoch=True, begin=40, end=800, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=800)
