"""Unconditional generation: sampler, tools/generate.py, hook (the recorded release trajectory:
tests/test_verify_reference.py)."""
import math
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import HOOKS, MODELS, TASK_UTILS
from PIL import Image

from addp_mm.apis import image_grid, rank_range
from addp_mm.engine.hooks import GenerationVisHook
from addp_mm.models.generation import ADDPSampler, GenerationGeometry
from addp_mm.models.utils import to_uint8
from conftest import free_port, run_command, tool
from verification.generation import sampler_from_release_args

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# 64x64 images, 16 px patches and a 16x downsampling VQGAN: a 4x4 token grid, 64 codes of width 32
TINY_MODEL = dict(
    type='ADDP',
    backbone=dict(type='ADDPViT', arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                                            feedforward_channels=64),
                  img_size=64, patch_size=16, pre_norm=True, final_norm=True, out_type='raw'),
    neck=dict(type='ADDPDecoder', depth=1, num_heads=2, num_classes=0, drop=0.0),
    head=dict(type='ADDPSoftTargetLoss', label_smoothing=0.1),
    target_generator=dict(
        type='ADDPNoiser',
        tokenizer=dict(type='VQGANTokenizer', ch=32, ch_mult=[1, 1, 1, 1, 1], num_res_blocks=1,
                       z_channels=32, n_embed=64, embed_dim=32, resolution=64, checkpoint=None),
        token_predictor=None))


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    model = MODELS.build(TINY_MODEL).eval()
    # sharpen the decoder so that samples depend on the seed in an interesting way
    torch.nn.init.normal_(model.neck.token_emb.weight, std=0.5)
    return model


@pytest.fixture(scope='module')
def model():
    return tiny_model()


# ----------------------------------------------------------------------------------------------
# schedule, temperature, sampling
# ----------------------------------------------------------------------------------------------
def test_schedule_counts():
    s = ADDPSampler(num_steps=4)
    assert [s.num_masked(i, 256) for i in range(4)] == [237, 182, 98, 1]  # the reference vectors
    s = ADDPSampler(num_steps=20)
    counts = [s.num_masked(i, 256) for i in range(20)]
    assert counts[0] == math.ceil(256 * math.cos(math.pi / 40)) and counts[-1] == 1
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    s = ADDPSampler(num_steps=256, schedule='linear')
    counts = [s.num_masked(i, 256) for i in range(256)]
    assert counts == list(range(255, 0, -1)) + [1]  # one more token per step; 1 stays masked
    s = ADDPSampler(num_steps=3, schedule='linear')
    assert [s.num_masked(i, 16) for i in range(3)] == [11, 6, 1]
    assert TASK_UTILS.build(dict(type='ADDPSampler', num_steps=7)).num_steps == 7
    for bad in (dict(num_steps=0), dict(schedule='exp'), dict(temperature_mode='x'),
                dict(top_p=0.), dict(choice_temperature=-1.)):
        with pytest.raises(ValueError):
            ADDPSampler(**bad)


def test_trajectory_masks_follow_schedule(model):
    geo = GenerationGeometry(model)
    assert (geo.num_tokens, geo.grid_hw, geo.codebook_size, geo.code_dim) == (16, (4, 4), 64, 32)
    for schedule in ('cosine', 'linear'):
        s = ADDPSampler(num_steps=4, schedule=schedule)
        images, traj = s.sample(model, 2, seed=0, return_trajectory=True)
        assert images.shape == (2, 3, 64, 64) and images.dtype == torch.float32
        assert len(traj) == 4 and bool(traj[0]['mask'].all())
        for i, st in enumerate(traj):
            expected = s.num_masked(i, 16)
            assert st['mask_len'] == expected
            assert st['mask_next'].sum(1).tolist() == [expected] * 2
            assert bool((st['mask_next'] <= st['mask']).all())  # a known token stays known
            if i:  # tokens known before the step are kept
                known = ~st['mask']
                assert torch.equal(st['tokens'][known], traj[i - 1]['tokens'][known])
            assert int(st['tokens'].max()) < 64  # codebook ids only
        assert traj[-1]['mask_len'] == 1
        assert torch.equal(traj[-1]['pixels'], images)


def test_seed_determinism(model):
    s = ADDPSampler(num_steps=3)
    a = s.sample(model, 3, seed=1)
    assert torch.equal(a, s.sample(model, 3, seed=1))
    assert not torch.equal(a, s.sample(model, 3, seed=2))
    # one generator for successive batches: a stream, reproducible from the seed
    g = torch.Generator().manual_seed(5)
    first, second = s.sample(model, 2, generator=g), s.sample(model, 2, generator=g)
    assert not torch.equal(first, second)
    g.manual_seed(5)
    assert torch.equal(first, s.sample(model, 2, generator=g))
    # rows of one batch are different draws
    assert not torch.equal(a[0], a[1])
    # the model's mode is restored
    model.train()
    s.sample(model, 1, seed=0)
    assert model.training
    model.eval()


def test_top_p_tiny_is_argmax():
    torch.manual_seed(0)
    logits = torch.randn(3, 50, 64) * 3
    g = torch.Generator().manual_seed(0)
    ids = ADDPSampler(top_p=1e-9).sample_ids(logits, g)
    assert torch.equal(ids, logits.argmax(-1))
    # nucleus: probabilities .3 .3 .2 .2 with top_p .5 keeps the first two only
    probs = torch.tensor([0.2, 0.3, 0.2, 0.3])
    logits = probs.log().expand(2000, 1, 4)
    ids = ADDPSampler(top_p=0.5).sample_ids(logits, g)
    assert set(ids.unique().tolist()) == {1, 3}
    ids = ADDPSampler(top_p=None).sample_ids(logits, g)  # categorical: everything, at its rate
    freq = torch.bincount(ids.flatten(), minlength=4).double() / ids.numel()
    assert float((freq - probs.double()).abs().max()) < 0.05


def test_temperature_modes_and_confidence():
    dyn = ADDPSampler(num_steps=4, choice_temperature=6.0)
    sta = ADDPSampler(num_steps=4, choice_temperature=6.0, temperature_mode='static')
    assert [dyn.temperature(i) for i in range(4)] == [4.5, 3.0, 1.5, 0.0]
    assert [sta.temperature(i) for i in range(4)] == [6.0] * 4
    torch.manual_seed(0)
    logits = torch.randn(2, 64, 64)
    tokens = torch.randint(0, 64, (2, 64))
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[:, :8] = False  # known positions: never re-masked
    log_p = logits.log_softmax(-1).gather(-1, tokens[..., None])[..., 0]
    n = dyn.num_masked(1, 64)  # 46 of the 56 masked positions stay masked after step 1
    # temperature 0: the n lowest log p among the masked positions, no randomness
    cold = ADDPSampler(num_steps=4, choice_temperature=0.)
    nxt = cold.next_mask(logits, tokens, mask, 1, torch.Generator().manual_seed(0))
    ranked = torch.where(mask, log_p, torch.full_like(log_p, math.inf)).argsort(-1)[:, :n]
    assert torch.equal(nxt, torch.zeros_like(nxt).scatter_(1, ranked, True))
    # the last dynamic step has temperature 0 too
    assert torch.equal(dyn.next_mask(logits, tokens, mask, 3, torch.Generator().manual_seed(1)),
                       cold.next_mask(logits, tokens, mask, 3, None))
    # with noise: the count still holds, known positions stay known, the draw depends on the seed
    masks = [sta.next_mask(logits, tokens, mask, 1, torch.Generator().manual_seed(k))
             for k in range(3)]
    for m in masks:
        assert m.sum(1).tolist() == [n, n] and not bool(m[:, :8].any())
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], nxt)
    # static keeps the noise at the last step, dynamic does not
    g = torch.Generator().manual_seed(3)
    assert not torch.equal(sta.next_mask(logits, tokens, mask, 3, g),
                           cold.next_mask(logits, tokens, mask, 3))


def test_confidence_rule_by_hand():
    """The paper's rule, computed by hand with fixed noise: confidence = log p(sampled code) +
    temperature(s) * g with temperature(s) = 6.0 * (1 - (s + 1) / T) (dynamic; 'static' keeps
    6.0), and the ``num_masked(s)`` least confident still-masked positions stay masked (a known
    one never is). A wrong sign or scale of the noise term picks another set here."""
    T, s = 5, 3
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.4, 0.3], [-2.0, 3.0, 0.0], [1.0, 1.0, 1.0],
                            [0.0, 0.0, 4.0], [1.5, -0.5, 0.2], [0.1, 0.9, 0.3], [3.0, 2.0, 1.0]]])
    tokens = torch.tensor([[1, 0, 1, 2, 0, 0, 1, 2]])
    mask = torch.tensor([[True, True, False, True, True, True, True, True]])  # 2 is known
    g = torch.tensor([[-0.1, -1.6, -0.3, 0.4, 1.7, 1.9, -0.1, 1.5]])

    def lowest(temp, k):
        conf = {}
        for i in range(8):
            if mask[0, i]:
                row = logits[0, i].tolist()
                log_p = row[tokens[0, i]] - math.log(sum(math.exp(x) for x in row))
                conf[i] = log_p + temp * g[0, i].item()
        return set(sorted(conf, key=conf.get)[:k])

    dynamic = ADDPSampler(num_steps=T, choice_temperature=6.0)
    static = ADDPSampler(num_steps=T, choice_temperature=6.0, temperature_mode='static')
    k = math.ceil(8 * math.cos(math.pi / 2 * (s + 1) / T))
    assert dynamic.num_masked(s, 8) == k == 3
    temp = 6.0 * (1 - (s + 1) / T)  # 1.2
    assert dynamic.temperature(s) == pytest.approx(temp)
    expected = lowest(temp, k)
    assert len({frozenset(expected), frozenset(lowest(-temp, k)), frozenset(lowest(0, k)),
                frozenset(lowest(6.0, k))}) == 4  # the case tells sign, scale and mode apart
    for sampler, t in ((dynamic, temp), (static, 6.0)):
        got = sampler.next_mask(logits, tokens, mask, s, gumbel=g)
        assert set(torch.nonzero(got[0]).flatten().tolist()) == lowest(t, k), sampler


def test_gumbel_noise_is_standard_gumbel():
    """The drawn noise has the standard Gumbel law (mean = Euler's gamma, variance pi^2/6, CDF
    exp(-exp(-x))), and ``next_mask`` uses exactly that draw when it draws itself."""
    from scipy import stats
    noise = ADDPSampler.gumbel_noise(torch.empty(100000), torch.Generator().manual_seed(0))
    assert noise.mean().item() == pytest.approx(0.5772157, abs=0.02)
    assert noise.var().item() == pytest.approx(math.pi ** 2 / 6, rel=0.03)
    assert stats.kstest(noise.numpy(), stats.gumbel_r.cdf).pvalue > 1e-3
    torch.manual_seed(0)
    logits, tokens = torch.randn(2, 64, 16) * 2, torch.randint(0, 16, (2, 64))
    mask = torch.ones(2, 64, dtype=torch.bool)
    sampler = ADDPSampler(num_steps=4, choice_temperature=6.0)
    drawn = sampler.next_mask(logits, tokens, mask, 0, torch.Generator().manual_seed(7))
    g = ADDPSampler.gumbel_noise(torch.empty(2, 64), torch.Generator().manual_seed(7))
    assert torch.equal(drawn, sampler.next_mask(logits, tokens, mask, 0, gumbel=g))


def test_release_args_and_autocast(model):
    s = sampler_from_release_args(dict(num_iteration=4, choice_temperature=0.0,
                                       sampling_strategy='top_p', top_p=1e-9,
                                       temperature_strategy='dynamic',
                                       mask_ratio_sample_strategy='cosine', mask_ratio=1.0))
    assert (s.num_steps, s.top_p, s.choice_temperature) == (4, 1e-9, 0.0)
    assert sampler_from_release_args(dict(sampling_strategy='default', top_p=1.0)).top_p is None
    with pytest.raises(ValueError, match='mask_ratio'):
        sampler_from_release_args(dict(mask_ratio=0.5))
    out = ADDPSampler(num_steps=2).sample(model, 2, seed=0, autocast_dtype='bf16')
    assert out.dtype == torch.float32 and out.shape == (2, 3, 64, 64) and torch.isfinite(out).all()
    u8 = to_uint8(torch.tensor([[-0.5, 0.0, 0.5, 0.999, 1.0, 7.0]]))
    assert u8.dtype == torch.uint8 and u8.tolist() == [[0, 0, 127, 254, 255, 255]]


def test_rank_range_and_grid():
    for world in (1, 3, 8):
        blocks = [rank_range(50, r, world) for r in range(world)]
        assert blocks[0][0] == 0 and blocks[-1][1] == 50
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    grid = image_grid(torch.full((5, 3, 8, 8), 200, dtype=torch.uint8), nrow=3, padding=2)
    assert grid.shape == (3, 2 * 10 + 2, 3 * 10 + 2) and grid.dtype == torch.uint8
    assert int(grid[0, 2, 2]) == 200 and int(grid[0, 0, 0]) == 0
    assert int(grid[0, 12, 22]) == 0  # the empty sixth slot is black
    assert image_grid(torch.zeros(4, 3, 8, 8, dtype=torch.uint8)).shape == (3, 22, 22)  # 2 x 2


# ----------------------------------------------------------------------------------------------
# tools/generate.py
# ----------------------------------------------------------------------------------------------
def _generate_tool():
    return tool('generate')


def _tool_images(out, n):
    return [np.array(Image.open(out / f'{i:06d}.png')) for i in range(n)]


def _sampled_images(cfg, ckpt, sampler, batches, seed):
    """What the tool should have written: the model built from the same config and file (random
    tokenizer seeded as the tool seeds it), sampled batch after batch from one seeded stream."""
    from addp_mm.apis import build_generation_model
    torch.manual_seed(0)
    model, _ = build_generation_model(str(cfg), str(ckpt))
    g = torch.Generator().manual_seed(seed)
    images = [to_uint8(sampler.sample(model, n, generator=g)) for n in batches]
    return [im.permute(1, 2, 0).numpy() for im in torch.cat(images)]


def test_generate_tool_on_our_checkpoint(tmp_path):
    """tools/generate.py writes exactly what ``ADDPSampler.sample`` draws from the model in the
    given file (seed, batches, sampler options), and another file gives other images."""
    ckpts = []
    for seed in (3, 5):  # two checkpoints: a tool that ignored the file would give equal images
        ckpt = tmp_path / f'iter_{seed}.pth'
        torch.save({'meta': {'iter': 10}, 'state_dict': tiny_model(seed=seed).state_dict()}, ckpt)
        ckpts.append(ckpt)
    cfg = tmp_path / 'tiny_gen.py'
    Config(dict(model=dict(TINY_MODEL, target_generator=dict(
        TINY_MODEL['target_generator'], token_predictor=dict(type='MAGETokenPredictor'))),
                sampler=dict(type='ADDPSampler', num_steps=3))).dump(str(cfg))
    out = tmp_path / 'samples'
    common = ['--batch-size', '2', '--seed', '4', '--device', 'cpu', '--no-progress']
    _generate_tool().main([str(cfg), str(ckpts[0]), '--num-images', '5', '--out-dir', str(out)]
                          + common)
    names = sorted(p.name for p in out.iterdir())
    assert names == [f'{i:06d}.png' for i in range(5)] + ['grid.png']
    written = _tool_images(out, 5)
    assert written[0].shape == (64, 64, 3) and written[0].dtype == np.uint8
    grid = np.array(Image.open(out / 'grid.png'))
    assert grid.shape == (2 + 2 * 66, 2 + 3 * 66, 3)
    expected = _sampled_images(cfg, ckpts[0], ADDPSampler(num_steps=3), [2, 2, 1], seed=4)
    for i in range(5):
        assert np.array_equal(written[i], expected[i]), i
    # the other checkpoint: other images from the same seed
    other = tmp_path / 'other'
    _generate_tool().main([str(cfg), str(ckpts[1]), '--num-images', '2', '--out-dir', str(other)]
                          + common)
    assert all(np.abs(a.astype(int) - b).mean() > 5 for a, b in zip(_tool_images(other, 2), written))
    # --steps / --top-p / --temperature / --temperature-mode / --schedule reach the sampler
    options = ['--steps', '2', '--top-p', '0.6', '--temperature', '2.5', '--temperature-mode',
               'static', '--schedule', 'linear']
    tuned = tmp_path / 'tuned'
    _generate_tool().main([str(cfg), str(ckpts[0]), '--num-images', '2', '--out-dir', str(tuned)]
                          + common + options)
    sampler = ADDPSampler(num_steps=2, top_p=0.6, choice_temperature=2.5, temperature_mode='static',
                          schedule='linear')
    expected = _sampled_images(cfg, ckpts[0], sampler, [2], seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(_tool_images(tuned, 2), expected))
    assert not np.array_equal(_tool_images(tuned, 1)[0], written[0])


@pytest.mark.slow
def test_generate_tool_two_ranks(tmp_path):
    """--launcher pytorch: each rank writes its own block of indices (rank r seeded with seed + r);
    rank 0 writes the grid. The ranks' samples differ and equal 1-rank runs with the same seeds."""
    model = tiny_model(seed=3)
    ckpt = tmp_path / 'iter_10.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    cfg = tmp_path / 'tiny_gen.py'
    Config(dict(model=TINY_MODEL, sampler=dict(type='ADDPSampler', num_steps=2))).dump(str(cfg))
    out = tmp_path / 'samples'
    cmd = ['python', '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', str(free_port()), osp.join(ROOT, 'tools', 'generate.py'), str(cfg), str(ckpt),
           '--num-images', '5', '--batch-size', '2', '--out-dir', str(out),
           '--launcher', 'pytorch', '--device', 'cpu']
    proc = run_command(cmd, what='tools/generate.py on 2 ranks')
    names = sorted(p.name for p in out.iterdir())
    assert names == [f'{i:06d}.png' for i in range(5)] + ['grid.png']
    assert '5 images on 2 rank(s)' in proc.stdout
    images = [np.asarray(Image.open(out / f'{i:06d}.png')) for i in range(5)]
    # rank 0 wrote 0-1 (seed 0), rank 1 wrote 2-4 (seed 1): all different samples
    assert [rank_range(5, r, 2) for r in range(2)] == [(0, 2), (2, 5)]
    assert len({im.tobytes() for im in images}) == 5
    # the same images as 1-rank runs with those seeds (rank 1's block = the first three of seed 1)
    for seed, first, count in ((0, 0, 2), (1, 2, 3)):
        single = tmp_path / f'single_seed{seed}'
        _generate_tool().main([str(cfg), str(ckpt), '--num-images', str(count), '--batch-size', '2',
                               '--seed', str(seed), '--out-dir', str(single), '--device', 'cpu',
                               '--no-progress'])
        for i in range(count):
            again = np.asarray(Image.open(single / f'{i:06d}.png')).astype(int)
            # the same sample; pixels may differ by float rounding (other thread counts)
            diff = np.abs(again - images[first + i])
            assert diff.max() <= 2 and diff.mean() < 0.05, (seed, i, diff.max(), diff.mean())
    # while two different samples differ everywhere
    assert np.abs(images[0].astype(int) - images[2]).mean() > 5


def test_generate_tool_on_release_checkpoint(tmp_path, reference_dir):
    """The released checkpoint format (tokenizer from its vqgan.* keys) with the recorded
    deterministic settings reproduces the recorded images."""
    from verification.core import ReferenceDir
    from verification.pretrain import addp_model_cfg
    ref = ReferenceDir(reference_dir)
    model_cfg = addp_model_cfg(ref, with_token_predictor=False)
    model_cfg['target_generator']['tokenizer']['checkpoint'] = str(tmp_path / 'not_needed.ckpt')  # vqgan.* win
    cfg = tmp_path / 'ref_gen.py'
    sampler = sampler_from_release_args(ref.vectors['gen_args'])
    Config(dict(model=model_cfg, sampler=vars(sampler))).dump(str(cfg))
    out = tmp_path / 'samples'
    _generate_tool().main([str(cfg), ref.file('addp'), '--num-images', '2', '--out-dir', str(out),
                           '--device', 'cpu', '--no-progress'])
    expected = to_uint8(ref.vectors['gen_img']).permute(0, 2, 3, 1).numpy()
    for i in range(2):
        img = np.array(Image.open(out / f'{i:06d}.png')).astype(int)
        # 1e-5 pixel noise may cross a truncation boundary: at most one level, rarely
        diff = np.abs(img - expected[i].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


# ----------------------------------------------------------------------------------------------
# GenerationVisHook
# ----------------------------------------------------------------------------------------------
class _Visualizer:

    def __init__(self):
        self.images = []

    def add_image(self, name, image, step=0):
        self.images.append((name, image.shape, image.dtype, step))


def test_generation_vis_hook(tmp_path, model):
    hook = HOOKS.build(dict(type='GenerationVisHook', interval=3, num_images=4, nrow=2,
                            sampler=dict(num_steps=2)))
    assert isinstance(hook, GenerationVisHook) and hook.sampler.num_steps == 2
    runner = SimpleNamespace(model=SimpleNamespace(module=model), work_dir=str(tmp_path),
                             iter=0, visualizer=_Visualizer())
    model.train()
    for it in range(7):
        runner.iter = it
        hook.after_train_iter(runner, it)
    assert model.training  # back in training mode after sampling
    model.eval()
    files = sorted(p.name for p in (tmp_path / 'samples').iterdir())
    assert files == ['iter_3.png', 'iter_6.png']
    grid = np.array(Image.open(tmp_path / 'samples' / 'iter_3.png'))
    assert grid.shape == (2 + 2 * 66, 2 + 2 * 66, 3)
    assert runner.visualizer.images == [('samples', grid.shape, np.uint8, 3),
                                        ('samples', grid.shape, np.uint8, 6)]
    # fixed seed: the same model gives the same grid
    assert np.array_equal(grid, np.array(Image.open(tmp_path / 'samples' / 'iter_6.png')))
    # mmengine's visualizer with a backend on (LocalVisBackend here; TensorBoard alike)
    from mmengine.visualization import Visualizer
    runner.visualizer = Visualizer(name='generation_vis_hook_test', save_dir=str(tmp_path / 'vis'),
                                   vis_backends=[dict(type='LocalVisBackend')])
    runner.iter = 8
    hook.after_train_iter(runner, 8)
    assert (tmp_path / 'samples' / 'iter_9.png').is_file()
    assert (tmp_path / 'vis' / 'vis_data' / 'vis_image' / 'samples_9.png').is_file()
