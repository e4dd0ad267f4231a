"""The layers: the one ViT shared by the encoder, the decoder and the token predictor (attention
on SDPA, windows, decomposed relative position, block, position-embedding helpers, MLM head), the
VQGAN's encoder / decoder / quantizer, and the one switch to their inference forms."""
from .inference import optimize_for_inference, reference_form
from .mlm_head import MLMHead
from .pos_embed import resize_pos_embed, sincos_pos_embed_2d
from .vit import (Attention, LayerNorm6, TransformerBlock, build_blocks, decomposed_rel_pos_bias,
                  get_rel_pos, init_linear_and_norm, window_partition, window_unpartition)
from .vqgan import VectorQuantizer, VQGANDecoder, VQGANEncoder, VQGANResBlock

__all__ = ['Attention', 'TransformerBlock', 'build_blocks', 'LayerNorm6', 'init_linear_and_norm',
           'window_partition', 'window_unpartition', 'get_rel_pos', 'decomposed_rel_pos_bias',
           'resize_pos_embed', 'sincos_pos_embed_2d', 'MLMHead', 'VQGANEncoder', 'VQGANDecoder',
           'VQGANResBlock', 'VectorQuantizer', 'optimize_for_inference', 'reference_form']
