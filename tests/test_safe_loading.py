"""Safe loading everywhere: a crafted file whose unpickling would write a
marker file, fed through every entry point that reads a checkpoint or statistics file, is refused
with a message naming the pickled global and ``ADDP_TRUSTED_CHECKPOINTS``; nothing is written."""
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.registry import MODELS

from test_generation import TINY_MODEL
from test_load_paths import TINY_REST, load_tool
from test_token_predictor import TINY as TINY_MAGE
from tiny_classifier import make_class_folders, tiny_classifier_config

from addp_mm.checkpoint import TRUSTED_ENV, UnsafeCheckpointError, read_checkpoint


class WritesMarker:
    """Unpickling this calls ``open(path, 'w')``: the file appears (what any code could do)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, 'w')


def crafted_checkpoint(path, marker, **tensors):
    """A checkpoint-shaped file (mmengine / release layout) with the payload in ``meta``."""
    torch.save({'state_dict': tensors or {'w': torch.zeros(1)}, 'model': tensors or {'w': torch.zeros(1)},
                'meta': {'epoch': 1, 'iter': 1, 'payload': WritesMarker(marker)}, 'message_hub': {}}, path)
    return path


def crafted_statistics(path, marker):
    """An .npz with ``mu`` and ``sigma``, ``sigma`` an object array holding the payload."""
    np.savez(path, mu=np.zeros(2), sigma=np.array([WritesMarker(marker)], dtype=object))
    return path


def test_the_crafted_files_are_live_and_the_option_lifts_the_refusal(tmp_path, monkeypatch):
    """Without this the test below would prove nothing: listed in ADDP_TRUSTED_CHECKPOINTS, the
    same files are unpickled in full and do write the marker."""
    for name, make in (('evil.pth', crafted_checkpoint), ('evil.npz', crafted_statistics)):
        marker = tmp_path / f'{name}.written'
        path = make(tmp_path / name, marker)
        with pytest.raises(UnsafeCheckpointError):
            read_checkpoint(str(path))
        assert not marker.exists()
        monkeypatch.setenv(TRUSTED_ENV, os.pathsep.join(['/elsewhere/x.pth', str(path)]))
        loaded = read_checkpoint(str(path))
        assert marker.exists(), name
        assert 'meta' in loaded or 'sigma' in loaded
        monkeypatch.delenv(TRUSTED_ENV)


def _tiny_classifier(tmp_path):
    data = tmp_path / 'data'
    make_class_folders(str(data), n=1)
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_classifier_config(str(data), TINY_REST))
    return str(config)


def _generation_config(tmp_path):
    from mmengine.config import Config
    cfg = tmp_path / 'tiny_gen.py'
    Config(dict(model=TINY_MODEL, sampler=dict(type='ADDPSampler', num_steps=2))).dump(str(cfg))
    return str(cfg)


def _noiser(**parts):
    """An ADDPNoiser (model.target_generator) whose init_weights reads the parts' checkpoints."""
    cfg = dict(type='ADDPNoiser', tokenizer=dict(TINY_MODEL['target_generator']['tokenizer']),
               token_predictor=None)
    cfg.update(parts)
    MODELS.build(cfg).init_weights()


# entry point -> (how the file names itself in the message, what runs it)
ENTRY_POINTS = {
    'backbone init_cfg': ('ADDPViT init_cfg.checkpoint', lambda tmp, evil: MODELS.build(dict(
        type='ADDPViT', arch=dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64),
        img_size=32, patch_size=8, init_cfg=dict(type='Pretrained', checkpoint=evil))).init_weights()),
    'tools/test.py CHECKPOINT': ('CHECKPOINT', lambda tmp, evil: load_tool('test').main(
        [_tiny_classifier(tmp), evil, '--work-dir', str(tmp / 'work')])),
    'tools/train.py --resume': ('--resume', lambda tmp, evil: load_tool('train').main(
        [_tiny_classifier(tmp), '--resume', evil, '--work-dir', str(tmp / 'work')])),
    'tools/train.py load_from': ('load_from', lambda tmp, evil: load_tool('train').main(
        [_tiny_classifier(tmp), '--cfg-options', f'load_from={evil}', '--work-dir', str(tmp / 'work')])),
    'tools/generate.py': ('CHECKPOINT', lambda tmp, evil: load_tool('generate').main(
        [_generation_config(tmp), evil, '--num-images', '1', '--out-dir', str(tmp / 'out'),
         '--device', 'cpu', '--no-progress'])),
    'tokenizer checkpoint': ('model.target_generator.tokenizer.checkpoint', lambda tmp, evil: _noiser(
        tokenizer=dict(TINY_MODEL['target_generator']['tokenizer'], checkpoint=evil))),
    'token predictor checkpoint': ('model.target_generator.token_predictor.checkpoint',
                                   lambda tmp, evil: _noiser(token_predictor=dict(
                                       type='MAGETokenPredictor', **TINY_MAGE, checkpoint=evil))),
    'tools/fid_is.py --ref-stats': ('--ref-stats', lambda tmp, evil: load_tool('fid_is').main(
        [str(tmp), '--ref-stats', evil, '--inception-weights', evil])),
}


@pytest.mark.parametrize('entry', list(ENTRY_POINTS))
def test_crafted_pickle_is_refused_at_every_entry_point(tmp_path, entry, monkeypatch):
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    key, run = ENTRY_POINTS[entry]
    marker = tmp_path / 'marker_written_by_unpickling'
    if entry.startswith('tools/fid_is.py'):
        evil = str(crafted_statistics(tmp_path / 'evil_stats.npz', marker))
    else:
        evil = str(crafted_checkpoint(tmp_path / 'evil.pth', marker))
    with pytest.raises(UnsafeCheckpointError) as e:
        run(tmp_path, evil)
    message = str(e.value)
    assert not marker.exists()
    assert key in message and evil in message, message
    assert 'pickled global' in message and ('.open' in message), message
    assert f'{TRUSTED_ENV}={osp.realpath(evil)}' in message, message
