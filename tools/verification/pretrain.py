"""Reference checks: pretrain rows (see core.py).

Decoder, loss and mask-ratio distribution, each fed the inputs the release recorded
(``xt_encoder_out``, ``vq_indices``, ``mask_t``, ``tp_probs``), so a mismatch points at one stage.
"""
from typing import List

from addp_mm.checkpoint import read_checkpoint, release_decoder_state_dict, unwrap_state_dict
from addp_mm.models.heads import soft_target_cross_entropy
from addp_mm.models.necks import ADDPDecoder
from addp_mm.models.target_generators import MaskSchedule
from addp_mm.models.utils.masking import masked_positions

from .core import ReferenceDir, Row, compare, register_check


def build_reference_decoder(ref: ReferenceDir) -> ADDPDecoder:
    """An :class:`ADDPDecoder` with the dimensions of ``ref.config`` and the released weights."""
    cfg = ref.config
    grid = cfg['img_size'] // cfg['patch_size']
    codebook_size = cfg['vqgan']['n_embed']
    decoder = ADDPDecoder(
        embed_dim=cfg['embed_dim'], decoder_embed_dim=cfg['decoder_embed_dim'],
        depth=cfg['decoder_depth'], num_heads=cfg['decoder_num_heads'], mlp_ratio=cfg['mlp_ratio'],
        num_patches=grid * grid, vocab_size=codebook_size + 1000 + 1, codebook_size=codebook_size,
        drop=cfg['drop_out_rate'], norm_eps=cfg['norm_eps'])
    state = unwrap_state_dict(read_checkpoint(ref.file('addp'), 'reference file'))
    decoder.load_state_dict(release_decoder_state_dict(state), strict=True)
    return decoder.eval()


@register_check
def check_decoder(ref: ReferenceDir) -> List[Row]:
    v = ref.vectors
    decoder = build_reference_decoder(ref)
    inputs = (v['xt_encoder_out'], v['vq_indices'], v['mask_t'])
    tokens_in = decoder.embed(*inputs)
    # the release scores the whole sequence over the whole vocabulary: the decoder's features
    # scored by its head (our step scores only what the loss reads)
    hidden = decoder.features(*inputs)
    logits = decoder.score(hidden)
    # the loss from the recorded logits, at the masked grid positions
    mask, N = v['mask_t'], v['mask_t'].shape[1]
    positions = masked_positions(mask, int(mask[0].sum()))
    recorded = v['decoder_logits'][:, 1:1 + N].gather(
        1, positions.unsqueeze(-1).expand(-1, -1, v['decoder_logits'].shape[-1]))
    loss = soft_target_cross_entropy(recorded, v['tp_probs'], positions,
                                     label_smoothing=ref.config['label_smoothing'])
    return [
        compare('decoder_tokens_in', tokens_in, v['decoder_tokens_in']),
        compare('decoder_hidden', hidden, v['decoder_hidden']),
        compare('decoder_logits', logits, v['decoder_logits'], atol=5e-5),
        compare('loss_from_intermediates', loss, v['loss_from_intermediates'], atol=1e-5,
                note='recorded tp_probs + decoder_logits + mask_t'),
    ]


@register_check
def check_mask_schedule(ref: ReferenceDir) -> List[Row]:
    v, cfg = ref.vectors, ref.config
    schedule = MaskSchedule(num_steps=100, min_ratio=cfg['mask_ratio_min'],
                            max_ratio=cfg['mask_ratio_max'], mu=cfg['mask_ratio_mu'],
                            std=cfg['mask_ratio_std'])
    default = MaskSchedule()
    # the probabilities: scipy's truncated-normal pdf of the float32 ratios, which NumPy 1 and 2
    # evaluate in different precisions (1.3e-9 apart, measured with numpy 1.26 vs 2.4)
    return [
        compare('mask_ratio_probs', default.probs, v['mask_ratio_probs'], atol=1e-8),
        compare('mask_ratios', default.ratios, v['mask_ratios'], atol=0.),
        compare('model_mask_ratio_probs', schedule.probs, v['model_mask_ratio_probs'], atol=1e-8),
        compare('model_mask_ratios', schedule.ratios, v['model_mask_ratios'], atol=0.),
    ]


def addp_model_cfg(ref: ReferenceDir, with_token_predictor: bool = True) -> dict:
    """The registry config of the whole ADDP model with the dimensions of ``ref.config``; every
    part loads from the release-format files of ``ref`` through our public loaders."""
    cfg = ref.config
    grid = cfg['img_size'] // cfg['patch_size']
    vq = cfg['vqgan']
    tp = cfg['token_predictor']
    model = dict(
        type='ADDP',
        backbone=dict(type='ADDPViT', arch=dict(embed_dims=cfg['embed_dim'], num_layers=cfg['depth'],
                                                num_heads=cfg['num_heads'],
                                                feedforward_channels=int(cfg['embed_dim'] * cfg['mlp_ratio'])),
                      img_size=cfg['img_size'], patch_size=cfg['patch_size'], pre_norm=True,
                      final_norm=True, out_type='raw', drop_rate=cfg['drop_out_rate'],
                      attn_drop_rate=cfg['drop_out_rate']),
        # embed_dim, num_patches and codebook_size come from the backbone and the tokenizer
        neck=dict(type='ADDPDecoder', decoder_embed_dim=cfg['decoder_embed_dim'],
                  depth=cfg['decoder_depth'], num_heads=cfg['decoder_num_heads'], mlp_ratio=cfg['mlp_ratio'],
                  num_classes=1000, drop=cfg['drop_out_rate'], norm_eps=cfg['norm_eps']),
        head=dict(type='ADDPSoftTargetLoss', label_smoothing=cfg['label_smoothing']),
        target_generator=dict(
            type='ADDPNoiser',
            tokenizer=dict(type='VQGANTokenizer', n_embed=vq['n_embed'], embed_dim=vq['embed_dim'],
                           **{k: v for k, v in vq['ddconfig'].items() if k != 'double_z'},
                           checkpoint=ref.file('vqgan')),
            token_predictor=dict(type='MAGETokenPredictor', embed_dim=tp['embed_dim'], depth=tp['depth'],
                                 num_heads=tp['num_heads'], decoder_embed_dim=tp['decoder_embed_dim'],
                                 decoder_depth=tp['decoder_depth'], decoder_num_heads=tp['decoder_num_heads'],
                                 mlp_ratio=tp['mlp_ratio'], grid_size=grid,
                                 checkpoint=ref.file('token_predictor')) if with_token_predictor else None,
            mask_schedule=dict(type='MaskSchedule', min_ratio=cfg['mask_ratio_min'],
                               max_ratio=cfg['mask_ratio_max'], mu=cfg['mask_ratio_mu'],
                               std=cfg['mask_ratio_std'])),
        init_cfg=dict(type='Pretrained', checkpoint=ref.file('addp')))
    return model


def build_reference_addp(ref: ReferenceDir, with_token_predictor: bool = True):
    from mmengine.registry import MODELS
    model = MODELS.build(addp_model_cfg(ref, with_token_predictor))
    model.init_weights()
    return model.eval()


@register_check
def check_addp_step(ref: ReferenceDir) -> List[Row]:
    """A whole pretraining step with the recorded fixed masks, stage by stage."""
    v = ref.vectors
    model = build_reference_addp(ref)
    state = model.target_generator(v['img'], v['mask_t'], v['mask_t_next'])
    x = (v['x_t'].clamp(0, 1) - model.pixel_mean) / model.pixel_std
    tokens, hw = model.backbone.embed(x)
    blocks = []
    for block in model.backbone.blocks:
        tokens = block(tokens, hw)
        blocks.append(tokens)
    loss = model.loss(v['img'], mask_t=v['mask_t'], mask_next=v['mask_t_next'])['loss']
    return [
        compare('z_t', state['z_t'], v['z_t'], note='ADDPNoiser'),
        compare('x_t', state['x_t'], v['x_t'], note='ADDPNoiser'),
        compare('xt_encoder_tokens_in', model.backbone.embed(x)[0], v['xt_encoder_tokens_in']),
        compare('xt_encoder_block_outputs', blocks, v['xt_encoder_block_outputs']),
        compare('xt_encoder_out', model.encode(v['x_t']), v['xt_encoder_out']),
        compare('loss', loss, v['loss'], note='ADDP.loss with the fixed masks'),
    ]
