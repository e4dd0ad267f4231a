"""tools/train.py end to end: train a tiny classifier 2 epochs, then --resume to 3 epochs."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

CONFIG = '''
default_scope = 'mmpretrain'
custom_imports = dict(imports=['addp_mm'], allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(num_classes=2, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True),
    backbone=dict(type='ADDPViT', arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64), img_size=32, patch_size=8, out_type='avg_featmap',
                  final_norm=False),
    head=dict(type='LinearClsHead', num_classes=2, in_channels=32,
              loss=dict(type='CrossEntropyLoss')))
train_dataloader = dict(
    batch_size=4, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CustomDataset', data_root=r'{data}',
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
train_cfg = dict(by_epoch=True, max_epochs=2)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
                     constructor='LayerDecayOptimWrapperConstructor',
                     paramwise_cfg=dict(layer_decay_rate=0.75))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=3, by_epoch=True)]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1),
                     logger=dict(type='LoggerHook', interval=1))
randomness = dict(seed=0)
'''


def make_class_folders(root, n=4):
    rng = np.random.default_rng(0)
    for c, colour in enumerate([(220, 30, 30), (30, 30, 220)]):
        d = osp.join(root, f'class{c}')
        import os
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            img = np.clip(rng.normal(colour, 20, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(osp.join(d, f'{i}.png'))


def run_train(*args):
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_two_epochs_then_resume_to_three(tmp_path):
    data = tmp_path / 'data'
    make_class_folders(str(data))
    cfg = tmp_path / 'tiny_cls.py'
    cfg.write_text(CONFIG.format(data=str(data)))
    work = tmp_path / 'work'
    run_train(str(cfg), '--work-dir', str(work))
    first = torch.load(work / 'epoch_2.pth', map_location='cpu', weights_only=True)
    assert first['meta']['epoch'] == 2
    iters_per_epoch = 2  # 8 images, batch 4
    log = run_train(str(cfg), '--work-dir', str(work), '--resume', '--cfg-options', 'train_cfg.max_epochs=3')
    assert 'resumed epoch: 2' in log, log[-2000:]
    final = torch.load(work / 'epoch_3.pth', map_location='cpu', weights_only=True)
    assert final['meta']['epoch'] == 3 and final['meta']['iter'] == 3 * iters_per_epoch
    # AdamW's step counters continue from the saved state: 3 epochs' worth of steps, not 1
    steps = {float(s['step']) for s in final['optimizer']['state'].values()}
    assert steps == {3.0 * iters_per_epoch}
    # the saved optimizer state was loaded: its second moments at resume equal the epoch-2 ones
    # for a parameter group count that matches the layer-decay grouping
    assert len(final['optimizer']['param_groups']) == len(first['optimizer']['param_groups'])


def test_checkpoints_hold_only_allow_listed_globals(tmp_path):
    """What an mmengine checkpoint pickles besides tensors is exactly what we allow-list."""
    from mmengine.logging import MessageHub

    from addp_mm.models.utils import safe_globals
    hub = MessageHub.get_instance('safe-globals-test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    path = tmp_path / 'ckpt.pth'
    torch.save(dict(message_hub=hub.state_dict(), meta=dict(seed=np.int64(3), arr=np.zeros(2))), path)
    import zipfile
    with zipfile.ZipFile(path) as z:
        pickled = z.read(next(n for n in z.namelist() if n.endswith('data.pkl')))
    assert b'HistoryBuffer' in pickled and b'getattr' not in pickled
    # nothing in it is outside torch's defaults plus our allow-list
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
    assert any(t.__name__ == 'HistoryBuffer' for t in safe_globals())
    loaded = torch.load(path, weights_only=True)
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 1.0
