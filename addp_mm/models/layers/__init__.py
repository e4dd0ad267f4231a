"""The one ViT shared by the encoder, the decoder and the token predictor: attention (SDPA,
windows, decomposed relative position), block, position-embedding helpers, MLM head."""
from .mlm_head import MLMHead
from .pos_embed import resize_pos_embed, sincos_pos_embed_2d
from .vit import (Attention, LayerNorm6, TransformerBlock, build_blocks, decomposed_rel_pos_bias,
                  get_rel_pos, init_linear_and_norm, window_partition, window_unpartition)

__all__ = ['Attention', 'TransformerBlock', 'build_blocks', 'LayerNorm6', 'init_linear_and_norm',
           'window_partition', 'window_unpartition', 'get_rel_pos', 'decomposed_rel_pos_bias',
           'resize_pos_embed', 'sincos_pos_embed_2d', 'MLMHead']
