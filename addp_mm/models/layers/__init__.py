from .mlm_head import MLMHead
from .pos_embed import resize_pos_embed, sincos_pos_embed_2d
from .vit import (Attention, LayerNorm6, TransformerBlock, build_blocks, decomposed_rel_pos_bias,
                  get_rel_pos, window_partition, window_unpartition)

__all__ = ['MLMHead', 'Attention', 'TransformerBlock', 'build_blocks', 'LayerNorm6', 'window_partition',
           'window_unpartition', 'get_rel_pos', 'decomposed_rel_pos_bias', 'resize_pos_embed',
           'sincos_pos_embed_2d']
