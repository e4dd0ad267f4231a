"""Editing with ADDP (``ADDPSampler.edit``, ``addp_mm.apis.edit``, ``tools/edit.py``) on a tiny
random model: the known tokens never change, the schedule counts the unknown positions, pixels
far from the region are the VQ reconstruction's, outpainting keeps the image's own tokens in
place on a larger grid, regions are rounded to the token grid and bad regions are one line.
Unconditional generation is unchanged (the release's trajectory: tests/test_verify_reference.py).
"""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.registry import MODELS
from PIL import Image

from addp_mm.apis import edit
from addp_mm.errors import UsageError
from addp_mm.models.generation import ADDPSampler
from conftest import run_command, tool, tool_in_process

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# 32x32 images, a VQGAN that downsamples by 2 (16x16 = 256 tokens: room for pixels far from a
# region), 2x2 patches, one block each
TINY = dict(
    type='ADDP',
    backbone=dict(type='ADDPViT', arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                                            feedforward_channels=64),
                  img_size=32, patch_size=2, pre_norm=True, final_norm=True, out_type='raw'),
    neck=dict(type='ADDPDecoder', depth=1, num_heads=2, num_classes=0, drop=0.0),
    head=dict(type='ADDPSoftTargetLoss', label_smoothing=0.1),
    target_generator=dict(
        type='ADDPNoiser',
        tokenizer=dict(type='VQGANTokenizer', ch=32, ch_mult=[1, 1], num_res_blocks=1,
                       z_channels=32, n_embed=64, embed_dim=32, resolution=32, checkpoint=None),
        token_predictor=None))


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    model = MODELS.build(TINY).eval()
    torch.nn.init.normal_(model.neck.token_emb.weight, std=0.5)  # seeds matter
    return model


@pytest.fixture(scope='module')
def image():
    torch.manual_seed(1)
    coarse = torch.rand(1, 3, 8, 8)
    return torch.nn.functional.interpolate(coarse, size=(32, 32), mode='bilinear')


def test_inpainting_keeps_every_known_token_and_follows_the_schedule(model, image):
    sampler = ADDPSampler(num_steps=5, choice_temperature=2.0)
    region = edit.box_region(model, (32, 32), (0, 0, 8, 8))  # a 4x4-token corner
    assert region.note is None and int(region.unknown.sum()) == 16
    result = edit.inpaint(model, sampler, image, region, num=3, seed=0, return_trajectory=True)
    tokens, grid = edit.encode_tokens(model, image)
    known = ~region.unknown.view(-1)
    assert torch.equal(result.tokens[:, known], tokens.expand(3, -1)[:, known])
    assert (result.tokens[:, ~known] != tokens[:, ~known]).any()
    # the unknown count follows the schedule over the 16 unknown positions (not the 256)
    counts = [int(step['mask_next'][0].sum()) for step in result.trajectory]
    assert counts == [sampler.num_masked(s, 16) for s in range(5)] and counts[-1] == 1
    assert all(not (step['mask_next'] & known).any() for step in result.trajectory)
    # the three results differ (one stream of noise), the same seed gives the same results
    assert not torch.equal(result.tokens[0], result.tokens[1])
    again = edit.inpaint(model, sampler, image, region, num=3, seed=0)
    assert torch.equal(again.tokens, result.tokens) and torch.equal(again.images, result.images)
    # the first step encodes the known codes and, in the region, a uniform distribution's code
    first = result.trajectory[0]['pixels_in']
    codes = model.target_generator.tokenizer.embed_indices(tokens, grid)
    mean_code = model.target_generator.tokenizer.codebook.mean(0).view(1, -1, 1, 1)
    mixed = torch.where(region.unknown.view(1, 1, *grid), mean_code, codes)
    with torch.no_grad():
        assert torch.allclose(first, model.target_generator.tokenizer.decode(mixed), atol=1e-5)


def test_pixels_approach_the_vq_reconstruction_away_from_the_region(model, image):
    """The known tokens are the image's, but the VQ decoder mixes neighbouring codes (3x3
    convolutions) and normalises over the whole map (GroupNorm), so the pixels move with the
    region: most near it, less with distance (measured here: mean |diff| 0.30 in the region,
    0.16 two tokens away, 0.04 six or more tokens away, on this random model)."""
    region = edit.box_region(model, (32, 32), (0, 0, 8, 8))  # the 4x4-token corner
    result = edit.inpaint(model, ADDPSampler(num_steps=4), image, region, seed=3)
    tokens, grid = edit.encode_tokens(model, image)
    diff = (result.images - edit.reconstruct(model, tokens, grid)).abs().mean(1)[0]
    # distance of each pixel to the region, in tokens (Chebyshev)
    ys, xs = torch.meshgrid(torch.arange(32) // 2, torch.arange(32) // 2, indexing='ij')
    distance = torch.maximum((ys - 3).clamp(min=0), (xs - 3).clamp(min=0))
    inside, near, far = (diff[distance == 0].mean(), diff[distance == 2].mean(),
                         diff[distance >= 6].mean())
    assert inside > 1.5 * near > 3 * far, (inside, near, far)
    assert far < 0.2 * inside


def test_outpainting_keeps_the_image_tokens_in_place_on_a_larger_grid(model, image):
    sampler = ADDPSampler(num_steps=3)
    result = edit.outpaint(model, sampler, image, (3, 0, 8, 2), seed=0)
    assert result.notes == ['--outpaint (3, 0, 8, 2) rounded up to whole 2-px tokens: (4, 0, 8, 2)']
    assert result.images.shape == (1, 3, 34, 44) and result.grid_hw == (17, 22)
    own, _ = edit.encode_tokens(model, image)
    placed = result.tokens.view(17, 22)[0:16, 2:18]
    assert torch.equal(placed.reshape(1, -1), own)  # the image's own tokens, in their place
    assert int(result.unknown.sum()) == 17 * 22 - 16 * 16
    # the decoder reads its position tables resized to the larger grid
    tables = model.neck.position_tables((17, 22))
    assert all(t.shape[1] == 1 + 17 * 22 for t in tables)
    assert all(t is s for t, s in zip(model.neck.position_tables((16, 16)),
                                      (model.neck.pos_embed, model.neck.pos_mask_embed,
                                       model.neck.pos_token_embed)))


def test_variations_regenerate_the_requested_fraction(model, image):
    result = edit.variations(model, ADDPSampler(num_steps=3), image, num=4, ratio=0.25, seed=0)
    assert result.unknown.sum(1).tolist() == [64] * 4
    tokens, _ = edit.encode_tokens(model, image)
    changed = (result.tokens != tokens).sum(1)
    assert (changed <= 64).all() and (changed > 0).all()
    assert not (result.tokens != tokens)[~result.unknown].any()
    assert len({tuple(u.nonzero().view(-1).tolist()) for u in result.unknown}) == 4


def test_regions_on_the_token_grid_and_the_one_line_mistakes(model):
    box = edit.box_region(model, (32, 32), (1, 3, 6, 8))
    assert int(box.unknown.sum()) == 3 * 3 and 'not on the 2-px token grid' in box.note
    assert 'rounded outward' in box.note
    # a box on a 64 px image maps to the 32 px canvas
    scaled = edit.box_region(model, (64, 64), (0, 0, 16, 16), canvas_hw=(32, 32))
    assert torch.equal(scaled.unknown, edit.box_region(model, (32, 32), (0, 0, 8, 8)).unknown)
    mask = np.zeros((32, 32), np.uint8)
    mask[16:, :] = 255
    half = edit.mask_region(model, mask, (32, 32))
    assert half.note is None and half.unknown[8:].all() and not half.unknown[:8].any()
    with pytest.raises(UsageError, match=r'is 32x20 \(width x height\) but the image is 32x32'):
        edit.mask_region(model, np.zeros((20, 32), np.uint8), (32, 32))
    with pytest.raises(UsageError, match='is empty: nothing to generate'):
        edit.mask_region(model, np.zeros((32, 32), np.uint8), (32, 32))
    with pytest.raises(UsageError, match='covers the whole image'):
        edit.mask_region(model, np.full((32, 32), 255, np.uint8), (32, 32))
    with pytest.raises(UsageError, match=r'box \(0, 0, 40, 8\): need'):
        edit.box_region(model, (32, 32), (0, 0, 40, 8))
    with pytest.raises(UsageError, match='ratio'):
        edit.random_regions((16, 16), 1.0, 2)
    with pytest.raises(UsageError, match='outpaint'):
        edit.outpaint_canvas(model, torch.zeros(1, 3, 32, 32), (0, 0, 0, 0))
    with pytest.raises(UsageError, match='same number of unknown positions'):
        tokens = torch.zeros(2, 256, dtype=torch.long)
        unknown = torch.zeros(2, 256, dtype=torch.bool)
        unknown[0, :3], unknown[1, :4] = True, True
        ADDPSampler(num_steps=2).edit(model, tokens, unknown)


def test_trajectory_pictures(model, image):
    factor = edit.token_factor(model)
    pictures = edit.TrajectoryPictures(factor)
    region = edit.box_region(model, (32, 32), (8, 8, 24, 24))
    edit.inpaint(model, ADDPSampler(num_steps=3), image, region, num=2, seed=0, on_step=pictures)
    strip = pictures.strip(1, gap=2)
    # the start and 3 steps, each the pixels above the mask, 2 px apart
    assert strip.dtype == torch.uint8 and strip.shape == (3, 2 + 64 + 2, 2 + 4 * (32 + 2))
    start_mask = strip[:, 2 + 32 + 8, 2 + 16]  # a pixel of the region in the first mask
    assert start_mask.tolist() == [255, 255, 255]
    assert strip[:, 2 + 32 + 1, 2 + 1].tolist() == [0, 0, 0]  # known: black
    marked = edit.mark_region(torch.full((3, 32, 32), 100, dtype=torch.uint8), region.pixels)
    assert marked[0, 16, 16] > 100 and marked[1, 16, 16] < 100 and marked[0, 0, 0] == 100


@pytest.mark.slow
def test_edit_tool_writes_what_it_says(tmp_path):
    """tools/edit.py on a saved tiny checkpoint: inpainting from a mask of another size than the
    canvas (resized with the image), a folder, the trajectory, the same seed the same files."""
    torch.manual_seed(0)
    model = MODELS.build(TINY)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, tmp_path / 'addp.pth')
    config = tmp_path / 'tiny.py'
    config.write_text(f'model = {TINY!r}\nsampler = dict(num_steps=3)\n')
    images = tmp_path / 'images'
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ('a', 'b'):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / f'{name}.png')
    mask = np.zeros((64, 64), np.uint8)
    mask[32:, :] = 255
    Image.fromarray(mask).save(tmp_path / 'mask.png')
    outs = [tmp_path / 'out1', tmp_path / 'out2']
    args = [config, tmp_path / 'addp.pth', images, '--mask', tmp_path / 'mask.png', '--num', '2',
            '--save-trajectory', '--out-dir']
    proc = run_command(['python', osp.join(ROOT, 'tools', 'edit.py'), *map(str, args), str(outs[0])],
                       cwd=tmp_path)
    assert 'resized to the model\'s 32x32 canvas' in proc.stdout
    assert '128 of 256 tokens generated' in proc.stdout
    tool_in_process('edit', args + [outs[1]], tmp_path)  # the same again, in this process
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == sorted(f'{n}_{kind}.png' for n in 'ab' for kind in (
        'input', 'side_by_side', 'inpaint_0', 'inpaint_1', 'trajectory_0', 'trajectory_1'))
    for name in names:
        assert np.array_equal(np.asarray(Image.open(outs[0] / name)),
                              np.asarray(Image.open(outs[1] / name))), name
    a0, a1 = (np.asarray(Image.open(outs[0] / f'a_inpaint_{k}.png')) for k in (0, 1))
    assert a0.shape == (32, 32, 3) and not np.array_equal(a0, a1)
    assert Image.open(outs[0] / 'a_side_by_side.png').size == (3 * 32 + 4 * 4, 32 + 2 * 4)
    # a mistake is the user's (one line: how the tools print it, tests/test_tools_ux.py)
    with pytest.raises(UsageError, match='covers the whole image'):
        tool_in_process('edit', [config, tmp_path / 'addp.pth', images / 'a.png', '--box', '0', '0',
                                 '64', '64', '--out-dir', tmp_path / 'o'], tmp_path)


def test_edit_tool_refuses_what_it_cannot_do():
    parse = tool('edit').parse_args
    with pytest.raises(SystemExit):
        parse(['c.py', 'k.pth', 'i.png', '--out-dir', 'o', '--variations', '3'])  # no --ratio
    with pytest.raises(SystemExit):
        parse(['c.py', 'k.pth', 'i.png', '--out-dir', 'o', '--box', '0', '0', '1', '1',
               '--mask', 'm.png'])
    args = parse(['c.py', 'k.pth', 'i.png', '--out-dir', 'o', '--outpaint', '0', '16', '0', '16'])
    assert args.outpaint == [0, 16, 0, 16]


def test_the_three_edits_on_the_released_architecture(reference_dir):
    """The release's architecture at its reference size (the checkpoints of shared/reference:
    256 px, a 16x16 token grid, MAGE's VQGAN layout): each edit runs and keeps the known
    tokens; outpainting 32 px to the right grows the grid to 16 x 18."""
    from verification.core import ReferenceDir
    from verification.pretrain import build_reference_addp
    ref = ReferenceDir(reference_dir)
    model = build_reference_addp(ref, with_token_predictor=False).eval()
    image = ref.vectors['img'][:1]
    tokens, grid = edit.encode_tokens(model, image)
    assert grid == (16, 16) and torch.equal(tokens, ref.vectors['vq_indices'][:1])
    sampler = ADDPSampler(num_steps=2)
    inpainted = edit.inpaint(model, sampler, image,
                             edit.box_region(model, (256, 256), (0, 128, 256, 256)), seed=0)
    grown = edit.outpaint(model, sampler, image, (0, 0, 32, 0), seed=0)
    varied = edit.variations(model, sampler, image, num=2, ratio=0.3, seed=0)
    for result in (inpainted, varied):
        known = ~result.unknown
        assert torch.equal(result.tokens[known], tokens.expand_as(result.tokens)[known])
    assert grown.grid_hw == (16, 18) and grown.images.shape == (1, 3, 256, 288)
    assert torch.equal(grown.tokens.view(16, 18)[:, :16].reshape(1, -1), tokens)
    assert inpainted.images.shape == (1, 3, 256, 256) and torch.isfinite(inpainted.images).all()
