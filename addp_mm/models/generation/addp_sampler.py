"""Unconditional image generation with a pretrained ADDP model.

Generation alternates the two halves of ADDP for ``T`` steps, starting from a grid where every
token is unknown:

    pixels x ──encoder──> features ──decoder (+ known tokens)──> logits over the codebook
    logits ──sample──> a code for every unknown position
           ──confidence = log p(code) + temperature * Gumbel──> keep the most confident codes,
                                                               re-mask the rest (schedule)
    known codes (hard) + re-masked positions (soft: E_p[code]) ──VQ decoder──> next pixels x

The image is the last ``x``. One position is still soft-embedded after the last step (the mask
length is clipped to at least 1), exactly as in the release.

Sizes come from the model: the token grid from the encoder's image size and the tokenizer's
downsampling factor, the codebook size and the code width from the tokenizer
(``model.target_generator.tokenizer``). The MAGE token predictor is not used.
"""
import math
from contextlib import contextmanager, nullcontext
from typing import Dict, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.registry import TASK_UTILS

from addp_mm.errors import UsageError

SCHEDULES = ('cosine', 'linear')
TEMPERATURE_MODES = ('dynamic', 'static')
AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'bfloat16': torch.bfloat16,
                   'fp16': torch.float16, 'float16': torch.float16}


def unwrap_model(model: nn.Module) -> nn.Module:
    """The ADDP model inside a (Mm)DistributedDataParallel wrapper, or the model itself."""
    return model.module if hasattr(model, 'module') else model


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class GenerationGeometry:
    """Token grid, codebook and widths of an ADDP model, read from its parts."""

    def __init__(self, model: nn.Module):
        for part in ('backbone', 'neck', 'target_generator'):
            if getattr(model, part, None) is None:
                raise UsageError(f'ADDPSampler needs an ADDP model with a {part!r}; got '
                                f'{type(model).__name__}')
        neck, tokenizer, backbone = model.neck, model.target_generator.tokenizer, model.backbone
        self.num_tokens = int(neck.num_patches)
        img_size = getattr(backbone, 'img_size', None)
        if img_size is not None:
            self.grid_hw = tuple(tokenizer.grid_size(img_size))
        else:
            side = math.isqrt(self.num_tokens)
            self.grid_hw = (side, side)
        if self.grid_hw[0] * self.grid_hw[1] != self.num_tokens:
            raise UsageError(
                f'the tokenizer grid {self.grid_hw} (image {img_size}, downsampling '
                f'{tokenizer.downsample_factor}) does not match the decoder\'s '
                f'{self.num_tokens} positions')
        self.codebook_size = int(tokenizer.n_embed)
        if int(getattr(neck, 'codebook_size', self.codebook_size)) != self.codebook_size:
            raise UsageError(f'decoder codebook_size {neck.codebook_size} != tokenizer n_embed '
                             f'{self.codebook_size}')
        self.code_dim = int(tokenizer.embed_dim)
        self.encoder_dim = int(neck.embed_dim)
        # any id works for the initial, fully masked grid; the mask id says what it means
        self.initial_token = int(getattr(neck, 'mask_token_id', 0))


def nucleus(sorted_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """The nucleus of ``top_p``: bool, shaped as ``sorted_probs`` (probabilities in descending
    order along the last dimension), True on the shortest prefix whose mass reaches ``top_p``
    (everything when the whole mass is below it). A code is in it when the codes ranked above it
    sum to less than ``top_p``, so the most likely code always is."""
    cum = sorted_probs.cumsum(-1)
    return torch.cat([torch.ones_like(cum[..., :1], dtype=torch.bool), cum[..., :-1] < top_p],
                     dim=-1)


@TASK_UTILS.register_module()
class ADDPSampler:
    """ADDP's iterative unconditional sampler.

    Args:
        num_steps: number of denoising steps ``T`` (release: 20; 256 with the linear schedule).
        schedule: ``'cosine'``: after step ``s`` (0-based) ``ceil(N * cos(pi/2 * (s+1)/T))``
            positions stay masked; ``'linear'``: ``ceil(N * (1 - (s+1)/T))``; clipped to [1, N].
        choice_temperature: scale of the Gumbel noise added to the confidences (release 6.0).
            0 ranks positions by ``log p(sampled code)`` alone.
        temperature_mode: ``'dynamic'`` anneals the scale to ``choice_temperature * (1 - (s+1)/T)``
            (release default); ``'static'`` keeps it constant.
        top_p: ``None`` samples from the full categorical distribution (release default);
            otherwise nucleus sampling over the smallest set of codes whose probability reaches
            ``top_p`` (the most likely code is always in it, so a tiny ``top_p`` is greedy).
    """

    def __init__(self, num_steps: int = 20, schedule: str = 'cosine',
                 choice_temperature: float = 6.0, temperature_mode: str = 'dynamic',
                 top_p: Optional[float] = None):
        if int(num_steps) < 1:
            raise UsageError(f'num_steps must be >= 1, got {num_steps}')
        if schedule not in SCHEDULES:
            raise UsageError(f'schedule={schedule!r}: choose one of {SCHEDULES}')
        if temperature_mode not in TEMPERATURE_MODES:
            raise UsageError(f'temperature_mode={temperature_mode!r}: choose one of '
                             f'{TEMPERATURE_MODES}')
        if choice_temperature < 0:
            raise UsageError(f'choice_temperature must be >= 0, got {choice_temperature}')
        if top_p is not None and not 0. < top_p <= 1.:
            raise UsageError(f'top_p must be in (0, 1] or None, got {top_p}')
        self.num_steps = int(num_steps)
        self.schedule = schedule
        self.choice_temperature = float(choice_temperature)
        self.temperature_mode = temperature_mode
        self.top_p = None if top_p is None else float(top_p)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_steps={self.num_steps}, schedule={self.schedule!r}, '
                f'choice_temperature={self.choice_temperature}, '
                f'temperature_mode={self.temperature_mode!r}, top_p={self.top_p})')

    # ------------------------------------------------------------------ schedule
    def mask_ratio(self, step: int) -> float:
        """Fraction of positions still masked after step ``step`` (0-based)."""
        progress = (step + 1) / self.num_steps
        if self.schedule == 'cosine':
            return math.cos(math.pi / 2. * progress)
        return 1. - progress

    def num_masked(self, step: int, num_tokens: int) -> int:
        """``clip(ceil(N * ratio(step)), 1, N)``: positions still masked after ``step``."""
        return int(min(max(math.ceil(num_tokens * self.mask_ratio(step)), 1), num_tokens))

    def temperature(self, step: int) -> float:
        """Scale of the Gumbel noise on the confidences at ``step``."""
        if self.temperature_mode == 'static':
            return self.choice_temperature
        return self.choice_temperature * (1. - (step + 1) / self.num_steps)

    # ------------------------------------------------------------------ one step, piece by piece
    @staticmethod
    def predict_logits(model: nn.Module, pixels: Optional[torch.Tensor], tokens: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
        """Codebook logits ``B x N x K`` (float32) of the decoder on ``pixels`` with the known
        ``tokens`` (``mask`` = 1 where unknown).

        ``pixels=None`` means that every position is masked (the first step): the decoder then
        replaces all encoder features by its mask token, so the encoder is not run. Only the
        grid positions' codebook logits are computed (not the whole vocabulary).
        """
        model = unwrap_model(model)
        B, N = mask.shape
        if pixels is None:
            enc = torch.zeros(B, N + 1, model.neck.embed_dim, device=mask.device)
        else:
            enc = model.encode(pixels)
        return model.neck(enc, tokens, mask, num_codes=model.neck.codebook_size).float()

    def sample_ids(self, logits: torch.Tensor, generator: Optional[torch.Generator] = None
                   ) -> torch.Tensor:
        """A code per position, ``B x N`` int64: categorical, or nucleus when ``top_p`` is set."""
        probs = logits.float().softmax(-1)
        flat = probs.reshape(-1, probs.shape[-1])
        if self.top_p is None:
            ids = torch.multinomial(flat, 1, generator=generator)
        else:
            sorted_probs, order = torch.sort(flat, dim=-1, descending=True, stable=True)
            keep = nucleus(sorted_probs, self.top_p)
            picked = torch.multinomial(sorted_probs * keep, 1, generator=generator)
            ids = order.gather(-1, picked)
        return ids.view(probs.shape[:-1])

    @staticmethod
    def gumbel_noise(like: torch.Tensor, generator: Optional[torch.Generator] = None
                     ) -> torch.Tensor:
        """Standard Gumbel noise shaped as ``like``: ``-log(E)`` with ``E ~ Exp(1)`` (the same law
        as ``-log(-log(U))``, ``U ~ U(0, 1)``)."""
        e = torch.empty_like(like, dtype=torch.float32).exponential_(generator=generator)
        return -e.clamp_min(torch.finfo(e.dtype).tiny).log()

    def next_mask(self, logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, step: int,
                  generator: Optional[torch.Generator] = None,
                  gumbel: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Bool ``B x N``: the ``num_masked(step)`` least confident positions of ``tokens``.

        Confidence is ``log p(token) + temperature(step) * g`` at masked positions and ``+inf``
        at known ones, so known tokens stay known; ``g`` is ``gumbel`` if given, else drawn with
        :meth:`gumbel_noise` from ``generator``.
        """
        B, N = tokens.shape
        log_p = logits.float().log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        temp = self.temperature(step)
        if temp > 0:
            if gumbel is None:
                gumbel = self.gumbel_noise(log_p, generator)
            log_p = log_p + temp * gumbel
        confidence = torch.where(mask.bool(), log_p, torch.full_like(log_p, math.inf))
        num = self.num_masked(step, N)
        lowest = confidence.topk(num, dim=-1, largest=False).indices
        return torch.zeros(B, N, dtype=torch.bool, device=tokens.device).scatter_(1, lowest, True)

    @staticmethod
    def render(model: nn.Module, logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
               grid_hw: Optional[Tuple[int, int]] = None,
               autocast: Optional[torch.dtype] = None) -> torch.Tensor:
        """Pixels ``B x 3 x H x W`` (float32, unclamped): the VQ decoder on the expected code
        ``softmax(logits) @ codebook`` where ``mask`` is set, on ``codebook[tokens]`` elsewhere."""
        tokenizer = unwrap_model(model).target_generator.tokenizer
        B, N = tokens.shape
        if grid_hw is None:
            side = math.isqrt(N)
            grid_hw = (side, side)
        hard = tokenizer.embed_indices(tokens, grid_hw).float()
        z = tokenizer.mix_codes(mask, logits.float().softmax(-1), hard)
        with _autocast(z.device, autocast):
            return tokenizer.decode(z).float()

    # ------------------------------------------------------------------ the whole loop
    @torch.no_grad()
    def sample(self, model: nn.Module, num_images: int, seed: Optional[int] = None,
               generator: Optional[torch.Generator] = None,
               device: Optional[Union[str, torch.device]] = None,
               autocast_dtype: Optional[Union[str, torch.dtype]] = None,
               return_trajectory: bool = False
               ) -> Union[torch.Tensor, Tuple[torch.Tensor, List[Dict]]]:
        """Generate ``num_images`` images in one batch.

        Args:
            model: an ``ADDP`` model (or a DDP wrapper of one); put in eval mode while sampling.
            num_images: batch size.
            seed: seeds a new generator on ``device`` (ignored when ``generator`` is given).
                Same seed, device and settings -> same images.
            generator: a ``torch.Generator`` on ``device``; keep passing the same one to draw
                successive batches of one seeded stream.
            device: where to sample (default: the model's device).
            autocast_dtype: ``torch.bfloat16`` / ``torch.float16`` (or ``'bf16'`` / ``'fp16'``)
                runs the encoder, decoder and VQ decoder under autocast; sampling and
                confidences stay in float32.
            return_trajectory: also return one dict per step with the input ``mask``, ``logits``,
                ``sampled`` ids, ``tokens``, next ``mask_next``, ``mask_len`` and ``pixels``.

        Returns:
            images ``B x 3 x H x W`` float32, unclamped (convert with
            :func:`addp_mm.models.utils.to_uint8`), and the
            trajectory when asked for.
        """
        model = unwrap_model(model)
        geo = GenerationGeometry(model)
        if device is None:
            device = next(model.parameters()).device
        device = torch.device(device)
        if generator is None:
            generator = torch.Generator(device=device)
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(int(seed))
        dtype = _autocast_dtype(autocast_dtype)

        B, N = int(num_images), geo.num_tokens
        tokens = torch.full((B, N), geo.initial_token, dtype=torch.long, device=device)
        mask = torch.ones(B, N, dtype=torch.bool, device=device)
        pixels = None
        trajectory = []
        with _eval_mode(model):
            for step in range(self.num_steps):
                with _autocast(device, dtype):
                    logits = self.predict_logits(model, pixels, tokens, mask)
                sampled = self.sample_ids(logits, generator)
                new_tokens = torch.where(mask, sampled, tokens)
                mask_next = self.next_mask(logits, new_tokens, mask, step, generator)
                pixels = self.render(model, logits, new_tokens, mask_next, geo.grid_hw, dtype)
                if return_trajectory:
                    trajectory.append(dict(mask=mask, logits=logits, sampled=sampled,
                                           tokens=new_tokens, mask_next=mask_next,
                                           mask_len=int(mask_next[0].sum()) if B else 0,
                                           pixels=pixels))
                tokens, mask = new_tokens, mask_next
        return (pixels, trajectory) if return_trajectory else pixels


def _autocast_dtype(dtype: Optional[Union[str, torch.dtype]]) -> Optional[torch.dtype]:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in AUTOCAST_DTYPES:
        raise UsageError(f'autocast dtype {dtype!r}: choose one of {sorted(AUTOCAST_DTYPES)}')
    return AUTOCAST_DTYPES[dtype]


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def build_sampler(sampler_cfg: Optional[Union[Dict, ADDPSampler]] = None,
                  **overrides) -> ADDPSampler:
    """An :class:`ADDPSampler` from a config dict (``type`` optional) with ``overrides`` applied
    (``None`` values are ignored)."""
    if isinstance(sampler_cfg, ADDPSampler) and not any(v is not None for v in overrides.values()):
        return sampler_cfg
    cfg = dict(type='ADDPSampler')
    if isinstance(sampler_cfg, ADDPSampler):
        cfg.update(num_steps=sampler_cfg.num_steps, schedule=sampler_cfg.schedule,
                   choice_temperature=sampler_cfg.choice_temperature,
                   temperature_mode=sampler_cfg.temperature_mode, top_p=sampler_cfg.top_p)
    elif sampler_cfg is not None:
        cfg.update(dict(sampler_cfg))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return TASK_UTILS.build(cfg)
