"""``VQAutoencoder``: train the ``VQGANTokenizer`` architecture as a VQ autoencoder on your images.

    pixels x (RGB in [0, 1])
      -> tokenizer.encode_latent ........ z (B x C x h x w)
      -> nearest code e, straight-through z_q = z + (e - z).detach()  (the tokenizer's quantizer)
      -> tokenizer.decode(z_q) .......... x_rec
    loss = |x_rec - x|^2 (mean)                     reconstruction
         + beta * |z - sg(e)|^2 (mean)              commitment (encoder towards its code)
         + codebook_weight * |sg(z) - e|^2 (mean)   codebook (code towards its encoder outputs)

(van den Oord et al. 2017, "Neural Discrete Representation Learning"; beta 0.25 as taming's
``VectorQuantizer2`` and MaskGIT). Perceptual (LPIPS) and adversarial terms are not implemented:
there are no offline LPIPS weights here, and on 32-px digits a pixel loss suffices.

Codebook usage: every step logs the fraction of codes used in the batch and the perplexity of the
batch's code histogram (``exp`` of its entropy). Dead codes: a running (decayed) count of how often
each code is chosen is kept; every ``restart_interval`` steps the codes whose count fell below
``restart_threshold`` are replaced by randomly chosen encoder outputs of the current batch
(the "random restart" of Dhariwal et al. 2020 / Zeghidour et al. 2021): more of the codebook is
used, at a slightly higher reconstruction error (docs/user_guides/train_every_part.md); it is on
by default. Under DDP the ranks decide on their averaged
counts and take rank 0's replacement vectors (broadcast).

The tokenizer is the same module ADDP freezes, kept under ``tokenizer``; the usage counters are
buffers of this wrapper, so ``tokenizer.state_dict()`` (what ``ExportPartHook`` writes) loads into
``VQGANTokenizer(checkpoint=...)`` strictly.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmengine.dist import all_reduce, broadcast, get_world_size
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from addp_mm.errors import UsageError

from ..utils.image import PIXELS_0_1

__all__ = ['VQAutoencoder']


@MODELS.register_module()
class VQAutoencoder(BaseModel):
    """A trainable ``VQGANTokenizer`` (see the module docstring).

    Args:
        tokenizer (dict): the ``VQGANTokenizer`` config (sizes; ``checkpoint`` to start from one).
        beta (float): weight of the commitment loss (0.25: taming, MaskGIT).
        codebook_weight (float): weight of the codebook loss (1.0: VQ-VAE).
        restart_dead_codes (bool): replace rarely used codes by encoder outputs.
        restart_interval (int): steps between restarts.
        restart_threshold (float): a code whose decayed count is below this is dead.
        usage_decay (float): decay of the running per-code counts (per step).
        data_preprocessor (dict): uint8 BGR batches -> float RGB in [0, 1].
    """

    def __init__(self, tokenizer: Dict, beta: float = 0.25, codebook_weight: float = 1.0,
                 restart_dead_codes: bool = True, restart_interval: int = 50,
                 restart_threshold: float = 1.0, usage_decay: float = 0.99,
                 data_preprocessor: Optional[Dict] = PIXELS_0_1,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.tokenizer = MODELS.build(tokenizer)
        if restart_interval < 1:
            raise UsageError(f'restart_interval must be >= 1, got {restart_interval}')
        self.beta = float(beta)
        self.codebook_weight = float(codebook_weight)
        self.restart_dead_codes = bool(restart_dead_codes)
        self.restart_interval = int(restart_interval)
        self.restart_threshold = float(restart_threshold)
        self.usage_decay = float(usage_decay)
        n = self.tokenizer.n_embed
        self.register_buffer('code_counts', torch.zeros(n))  # decayed counts per code
        self.register_buffer('num_steps', torch.zeros((), dtype=torch.long))
        self.register_buffer('num_restarted', torch.zeros((), dtype=torch.long))
        self._host_step = 0  # training steps on the host: restart timing without a device read

    def init_weights(self):
        super().init_weights()
        self.tokenizer.init_weights()

    # ------------------------------------------------------------------ pieces
    def quantize(self, z: torch.Tensor):
        """(e, z_q straight-through, indices B x N) for latents z (the tokenizer's quantizer)."""
        z_q, indices = self.tokenizer.quantize(z)
        b, c, h, w = z.shape
        e = self.tokenizer.codebook[indices.reshape(-1)].view(b, h, w, c).permute(0, 3, 1, 2)
        return e, z_q, indices

    @staticmethod
    def usage(indices: torch.Tensor, n_embed: int) -> Dict[str, torch.Tensor]:
        """Codes used (fraction of the codebook) and perplexity of a batch of indices."""
        hist = torch.bincount(indices.reshape(-1), minlength=n_embed).float()
        p = hist / hist.sum().clamp_min(1)
        entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
        return dict(codes_used=(hist > 0).float().mean(), perplexity=entropy.exp())

    @torch.no_grad()
    def restart_codes(self, z: torch.Tensor) -> int:
        """Replace dead codes (decayed count < threshold) by random encoder outputs of ``z``
        (B x C x h x w); their counts are reset to the threshold. Returns how many were replaced."""
        counts = self.code_counts
        if get_world_size() > 1:  # every rank decides on the same (rank-averaged) counts
            counts = counts.clone()
            all_reduce(counts, op='mean')
        dead = counts < self.restart_threshold
        num_dead = int(dead.sum())  # host read: only every restart_interval steps
        if num_dead == 0:
            return 0
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1]).float()
        pick = torch.randint(0, flat.shape[0], (num_dead, ), device=flat.device)
        new = flat[pick]
        if get_world_size() > 1:
            broadcast(new, 0)
        weight = self.tokenizer.codebook
        weight.data[dead] = new.to(weight.dtype)
        self.code_counts[dead] = self.restart_threshold
        self.num_restarted += num_dead
        return num_dead

    # ------------------------------------------------------------------ BaseModel API
    def loss(self, inputs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        z = self.tokenizer.encode_latent(inputs)
        e, z_q, indices = self.quantize(z)
        rec = self.tokenizer.decode(z_q)
        z32 = z.float()
        losses = dict(
            loss_rec=F.mse_loss(rec.float(), inputs.float()),
            loss_commit=self.beta * F.mse_loss(z32, e.detach()),
            loss_codebook=self.codebook_weight * F.mse_loss(e, z32.detach()))
        with torch.no_grad():
            counts = torch.bincount(indices.reshape(-1), minlength=self.tokenizer.n_embed).float()
            self.code_counts.mul_(self.usage_decay).add_(counts)
            self.num_steps += 1
            stats = self.usage(indices, self.tokenizer.n_embed)
            losses['codes_used'] = stats['codes_used']
            losses['perplexity'] = stats['perplexity']
        # restarts happen every ``restart_interval`` steps; a host counter decides, no device read
        if self.training and self.restart_dead_codes:
            self._host_step += 1
            if self._host_step % self.restart_interval == 0:
                self.restart_codes(z)
        return losses

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode in ('tensor', 'predict'):
            z = self.tokenizer.encode_latent(inputs)
            _, z_q, indices = self.quantize(z)
            return self.tokenizer.decode(z_q), indices
        raise ValueError(f'VQAutoencoder.forward: unknown mode {mode!r}')
