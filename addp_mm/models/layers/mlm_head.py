"""The masked-token prediction head shared by the ADDP decoder and the MAGE token predictor."""
from typing import Optional

import torch
import torch.nn as nn


class MLMHead(nn.Module):
    """``LayerNorm(GELU(fc(h))) @ E^T + bias``, with ``E`` the (tied) token embedding table.

    Args:
        in_dim: width of the hidden states.
        emb_dim: width of the token embedding table.
        vocab_size: number of vocabulary entries (size of ``bias``).
        ln_eps: the releases use a plain ``nn.LayerNorm`` here, i.e. eps 1e-5.
    """

    def __init__(self, in_dim: int, emb_dim: int, vocab_size: int, ln_eps: float = 1e-5):
        super().__init__()
        self.fc = nn.Linear(in_dim, emb_dim)
        self.act = nn.GELU()
        self.ln = nn.LayerNorm(emb_dim, eps=ln_eps)
        self.bias = nn.Parameter(torch.zeros(1, 1, vocab_size))

    def forward(self, x: torch.Tensor, word_embeddings: torch.Tensor,
                num_logits: Optional[int] = None) -> torch.Tensor:
        """Logits for the first ``num_logits`` vocabulary entries (all when None)."""
        h = self.ln(self.act(self.fc(x)))
        n = word_embeddings.shape[0] if num_logits is None else num_logits
        return torch.matmul(h, word_embeddings[:n].t()) + self.bias[..., :n]
