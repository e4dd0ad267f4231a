"""Reference checks: generation rows (see core.py).

The vectors record the release's deterministic trajectory (nucleus sampling with ``top_p=1e-9``,
i.e. greedy; choice temperature 0; 4 cosine steps). Each stage of every step is recomputed from
the state the release recorded for it, so one discrete flip cannot cascade into later rows:

- ``gen_logits``: decoder logits from the recorded pixels, tokens and input mask of the step;
- ``gen_sampled_ids`` / ``gen_tokens`` / ``gen_masks`` / ``gen_mask_len``: sampling and mask
  selection from the recorded logits;
- ``gen_xt_next``: the VQ decoder on the recorded logits, tokens and next mask.

``gen_img`` comes from a free-running :class:`ADDPSampler` with the recorded settings.
"""
from typing import List

import torch

from typing import Dict

from addp_mm.models.generation import ADDPSampler, GenerationGeometry

from .core import ReferenceDir, Row, compare, register_check
from .pretrain import build_reference_addp


def sampler_from_release_args(args: Dict) -> ADDPSampler:
    """A sampler with the settings of the release's ``main_generate.py`` arguments
    (``num_iteration``, ``mask_ratio_sample_strategy``, ``choice_temperature``,
    ``temperature_strategy``, ``sampling_strategy``, ``top_p``)."""
    if float(args.get('mask_ratio', 1.0)) != 1.0:
        raise ValueError('only unconditional generation (mask_ratio 1.0) is supported, got '
                         f"mask_ratio={args['mask_ratio']}")
    nucleus = args.get('sampling_strategy', 'default') == 'top_p'
    return ADDPSampler(num_steps=args.get('num_iteration', 20),
                       schedule=args.get('mask_ratio_sample_strategy', 'cosine'),
                       choice_temperature=args.get('choice_temperature', 6.0),
                       temperature_mode=args.get('temperature_strategy', 'dynamic'),
                       top_p=args.get('top_p', 1.0) if nucleus else None)


@register_check
def check_generation(ref: ReferenceDir) -> List[Row]:
    v = ref.vectors
    model = build_reference_addp(ref, with_token_predictor=False)
    sampler = sampler_from_release_args(v['gen_args'])
    geo = GenerationGeometry(model)
    steps = sampler.num_steps
    if v['gen_logits'].shape[0] != steps:
        raise ValueError(f"gen_logits has {v['gen_logits'].shape[0]} steps, gen_args say {steps}")
    # greedy sampling and temperature 0 draw nothing random, but give them a generator anyway
    gen = torch.Generator().manual_seed(0)

    logits, sampled, tokens, masks, mask_len, pixels = [], [], [], [], [], []
    for s in range(steps):
        mask_in = v['gen_token_all_mask'][s][:, 1:].bool()
        tokens_in = v['gen_gt_indices'] if s == 0 else v['gen_tokens'][s - 1]
        pixels_in = v['img'] if s == 0 else v['gen_xt_next'][s - 1]
        logits.append(sampler.predict_logits(model, pixels_in, tokens_in, mask_in))

        rec_logits = v['gen_logits'][s]
        ids = sampler.sample_ids(rec_logits, gen)
        sampled.append(ids)
        tokens.append(torch.where(mask_in, ids, tokens_in))
        nxt = sampler.next_mask(rec_logits, v['gen_tokens'][s], mask_in, s, gen)
        masks.append(nxt)
        # the selected count, if every row has the schedule's count
        rows = nxt.sum(-1)
        agreed = bool((rows == sampler.num_masked(s, geo.num_tokens)).all())
        mask_len.append(int(rows[0]) if agreed else -1)
        pixels.append(sampler.render(model, rec_logits, v['gen_tokens'][s], v['gen_masks'][s],
                                     geo.grid_hw))

    batch = v['gen_img'].shape[0]
    image, trajectory = sampler.sample(model, batch, seed=0, return_trajectory=True)
    staged = 'recorded per-step inputs'
    return [
        compare('gen_initial_mask', trajectory[0]['mask'], v['gen_initial_mask'],
                note="the free-running sampler's first mask"),
        compare('gen_logits', torch.stack(logits), v['gen_logits'], note=staged),
        compare('gen_sampled_ids', torch.stack(sampled), v['gen_sampled_ids'],
                note='nucleus top_p=1e-9 (greedy), recorded logits'),
        compare('gen_tokens', torch.stack(tokens), v['gen_tokens'], note=staged),
        compare('gen_masks', torch.stack(masks), v['gen_masks'],
                note='temperature 0: lowest log p, recorded logits and tokens'),
        compare('gen_mask_len', torch.tensor(mask_len), torch.tensor(v['gen_mask_len']),
                note='masked count per row = schedule count (-1: they differ)'),
        compare('gen_xt_next', torch.stack(pixels), v['gen_xt_next'], note=staged),
        compare('gen_img', image, v['gen_img'], note=f'free-running {sampler!r}'),
    ]
