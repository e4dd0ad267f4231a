"""Necks: ``ADDPDecoder`` (the pretraining decoder: encoder features + reliable tokens -> token
logits) and ``SimpleFPN`` (ViTDet's feature pyramid for detection)."""
from .addp_decoder import ADDPDecoder
from .simple_fpn import SimpleFPN

__all__ = ['ADDPDecoder', 'SimpleFPN']
