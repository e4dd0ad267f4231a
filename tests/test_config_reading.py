"""``memoize_config_reading`` (applied by ``import addp_mm``): our configs read and print exactly as
mmengine's own functions read and print them; a ``pkg::`` base is looked up once a process and a
failed lookup is not kept; a config's text is formatted once."""
import os.path as osp

import mmengine.config.config as config_module
import pytest
from mmengine.config import Config

from addp_mm.engine.config import FORMATTED_KEPT, memoize_config_reading

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# one per toolbox base: mmseg:: (and mmpretrain:: through the model), mmdet::, mmpretrain::, and
# a config without external bases
CONFIGS = ['configs/demo/upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py',
           'configs/demo/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py',
           'configs/imagenet/vit-base-p16_addp-pre_8xb128-coslr-100e_in1k-256px.py',
           'configs/generation/addp_vit-base-p16_20steps-cosine_in1k-256px.py']


def test_applied_on_import_and_only_once():
    lookup, formatted = Config._get_cfg_path, config_module.FormatCode
    assert lookup.__wrapped__ is not lookup and isinstance(lookup.cache, dict)
    assert formatted.__wrapped__ is not formatted and formatted.cache is not None
    memoize_config_reading()
    assert Config._get_cfg_path is lookup and config_module.FormatCode is formatted


@pytest.mark.parametrize('config', CONFIGS)
def test_configs_read_and_print_as_mmengine_reads_them(config, monkeypatch):
    path = osp.join(ROOT, config)
    first, again = Config.fromfile(path), Config.fromfile(path)
    monkeypatch.setattr(Config, '_get_cfg_path', staticmethod(Config._get_cfg_path.__wrapped__))
    monkeypatch.setattr(config_module, 'FormatCode', config_module.FormatCode.__wrapped__)
    own = Config.fromfile(path)
    assert first.to_dict() == again.to_dict() == own.to_dict()
    assert first.filename == own.filename
    assert first.pretty_text == again.pretty_text == own.pretty_text


def test_a_base_is_looked_up_once_and_a_failure_every_time(monkeypatch):
    lookup = Config._get_cfg_path
    monkeypatch.setattr(lookup, 'cache', {})
    original, calls = lookup.__wrapped__, []

    def counted(cfg_path, filename):
        calls.append(cfg_path)
        return original(cfg_path, filename)
    monkeypatch.setattr(lookup, '__wrapped__', counted)
    path = osp.join(ROOT, CONFIGS[0])
    Config.fromfile(path)
    external = [c for c in calls if '::' in c]
    assert len(external) == len(set(external)) >= 2, calls  # mmseg:: and mmpretrain:: bases
    assert set(lookup.cache) == set(external)
    calls.clear()
    Config.fromfile(path)
    assert calls and not [c for c in calls if '::' in c], calls  # the file's own bases still read
    for _ in range(2):  # mmocr is not installed here: refused each time, never kept
        with pytest.raises(ModuleNotFoundError, match='mmocr is not installed'):
            Config._get_cfg_path('mmocr::_base_/default_runtime.py', path)
    assert calls.count('mmocr::_base_/default_runtime.py') == 2
    assert 'mmocr::_base_/default_runtime.py' not in lookup.cache


def test_a_text_is_formatted_once(monkeypatch):
    formatted = config_module.FormatCode
    monkeypatch.setattr(formatted, 'cache', type(formatted.cache)())
    original, calls = formatted.__wrapped__, []

    def counted(text, **kwargs):
        calls.append(text)
        return original(text, **kwargs)
    monkeypatch.setattr(formatted, '__wrapped__', counted)
    # a long text (the keys print sorted): the whole of it is the key, not some part
    cfg = Config(dict(model=dict(type='A', **{f'key{i}': i for i in range(100)})))
    text = cfg.pretty_text
    assert cfg.pretty_text == text and len(calls) == 1
    cfg.model.key99 = -1  # another text on its last lines only: formatted anew
    assert 'key99=-1' in cfg.pretty_text and len(calls) == 2
    for depth in range(FORMATTED_KEPT + 2):  # only the last FORMATTED_KEPT texts are kept
        Config(dict(model=dict(depth=depth))).pretty_text
    assert len(formatted.cache) == FORMATTED_KEPT
