"""``tools/infer.py IMAGE CONFIG CHECKPOINT`` on the three demo models (detector, segmenter,
classifier): the toolbox's own inferencer writes its drawings and predictions, and the predictions
are the model's own on that image (the model the checkpoint holds, run through the config's test
pipeline by the toolbox's single-image API); a checkpoint of another model is one line saying so.

The checkpoints are written here from the config's model (seeded random weights, class names in
``meta.dataset_meta`` as training writes them), so a tool that ignored the file would predict with
other weights."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import fresh_mmengine_instances, require, tool
from PIL import Image

require('mmcv.ops', 'mmcv with its compiled ops is needed by the toolboxes')

from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs', 'demo')
CASES = {
    'mmdet': ('mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py',
              'data/demo/coco/val2017/000000000001.jpg'),
    'mmseg': ('upernet_vit-demo-p16_1xb8-2k_demo-ade-128x128.py',
              'data/demo/ade/images/validation/ade_demo_val_00000.jpg'),
    'mmpretrain': ('vit-demo-p16_1xb32-30e_demo-in1k-128px.py',
                   'data/demo/imagenet/val/star/star_00000.jpg'),
}


@pytest.fixture(autouse=True)
def forget_new_visualizers():
    """The toolboxes' inferencers made as the docs show them keep a visualizer named
    'visualizer' in the process, which mmengine would hand to a later test's runner (tools/infer.py
    names its own apart: addp_mm.apis.inference): forget those this test made."""
    from mmengine.visualization import Visualizer

    def classes(cls):
        return [cls] + [c for sub in cls.__subclasses__() for c in classes(sub)]
    before = {cls: set(cls._instance_dict) for cls in classes(Visualizer)}
    yield
    for cls in classes(Visualizer):
        for name in set(cls._instance_dict) - before.get(cls, set()):
            del cls._instance_dict[name]


# class names the checkpoint carries (not the config's), so the outputs show where they came from
CLASSES = {'mmdet': ('CIRCLE', 'SQUARE', 'TRIANGLE', 'STAR'),
           'mmseg': ('BACKGROUND', 'CIRCLE', 'SQUARE', 'TRIANGLE', 'STAR'),
           'mmpretrain': ('CIRCLE', 'SQUARE', 'TRIANGLE', 'STAR')}


def build_model(config: str):
    """The config's model in its scope, seeded random weights, eval mode."""
    from importlib import import_module

    from mmengine.registry import MODELS
    cfg = Config.fromfile(config)
    scope = cfg.default_scope
    import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(1)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(model_cfg)
    model.init_weights()
    model.cfg = cfg  # what the toolboxes' single-image APIs read
    return model.eval(), cfg


def save_checkpoint(model, path, classes=None):
    """``{'state_dict', 'meta'}`` as training writes it: the dataset's metainfo (here the config's
    with ``classes`` instead of its names); ``classes=None``: no meta."""
    meta = {}
    if classes is not None:
        meta = dict(dataset_meta=dict(model.cfg.test_dataloader.dataset.metainfo, classes=classes))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)


@pytest.fixture(scope='module')
def demo_models(tmp_path_factory):
    """scope -> (model, cfg, checkpoint file) of each demo config, built once for this file."""
    folder = tmp_path_factory.mktemp('infer_checkpoints')
    models = {}
    for scope, (name, _) in CASES.items():
        model, cfg = build_model(osp.join(DEMO, name))
        ckpt = folder / f'{scope}.pth'
        save_checkpoint(model, ckpt, CLASSES[scope])
        models[scope] = model, cfg, ckpt
    return models


def own_prediction(scope: str, model, cfg, image: str):
    """The model's prediction on ``image`` without the inferencer classes: mmdet's
    ``inference_detector``, mmseg's ``inference_model``, and for mmpretrain the config's test
    pipeline + ``test_step`` (its ``inference_model`` is the inferencer)."""
    with DefaultScope.overwrite_default_scope(scope), torch.no_grad():
        if scope == 'mmdet':
            from mmdet.apis import inference_detector
            return inference_detector(model, image)
        if scope == 'mmseg':
            from mmseg.apis import inference_model
            return inference_model(model, image)
        from mmengine.dataset import Compose, pseudo_collate
        from mmpretrain.registry import TRANSFORMS
        pipeline = Compose([TRANSFORMS.build(t) for t in cfg.test_dataloader.dataset.pipeline])
        return model.test_step(pseudo_collate([pipeline(dict(img_path=image))]))[0]


def run_infer(cwd, *args):
    here = os.getcwd()
    os.chdir(cwd)
    try:
        return tool('infer').main([str(a) for a in args])
    finally:
        os.chdir(here)


@pytest.mark.parametrize('scope', list(CASES))
def test_infer_writes_the_models_own_prediction(demo_cwd, demo_models, tmp_path, scope):
    name, image = CASES[scope]
    config = osp.join(DEMO, name)
    model, cfg, ckpt = demo_models[scope]
    out = tmp_path / 'out'
    assert run_infer(demo_cwd, image, config, ckpt, '--out-dir', out, '--device', 'cpu',
                     '--score-thr', '0') == 0
    path = str(demo_cwd / image)
    ours = own_prediction(scope, model, cfg, path)
    picture = np.asarray(Image.open(path).convert('RGB'))
    stem = osp.splitext(osp.basename(image))[0]
    if scope == 'mmdet':
        drawing = out / 'vis' / osp.basename(image)
        pred = json.load(open(out / 'preds' / f'{stem}.json'))
        inst = ours.pred_instances
        assert len(pred['labels']) == len(inst) > 0
        assert pred['labels'] == inst.labels.tolist()
        np.testing.assert_allclose(pred['scores'], inst.scores.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pred['bboxes'], inst.bboxes.numpy(), rtol=1e-5, atol=1e-3)
        assert len(pred['masks']) == len(inst)
        assert pred['masks'][0]['size'] == list(picture.shape[:2])
    elif scope == 'mmseg':
        drawing = out / 'vis' / osp.basename(image)
        label_map = np.asarray(Image.open(out / 'preds' / '00000000_pred.png'))
        assert label_map.shape == picture.shape[:2]
        np.testing.assert_array_equal(label_map, ours.pred_sem_seg.data[0].numpy())
    else:
        drawing = out / 'vis' / f'{stem}.png'
        pred = json.load(open(out / 'preds' / f'{stem}.json'))
        np.testing.assert_allclose(pred['pred_scores'], ours.pred_score.numpy(),
                                   rtol=1e-5, atol=1e-6)
        assert pred['pred_label'] == int(ours.pred_label) == int(np.argmax(pred['pred_scores']))
        assert pred['pred_class'] == CLASSES[scope][pred['pred_label']]  # the checkpoint's names
        # a checkpoint without class names: the config's
        ckpt = tmp_path / 'no_meta.pth'
        save_checkpoint(model, ckpt)
        run_infer(demo_cwd, image, config, ckpt, '--out-dir', tmp_path / 'out2', '--no-save-vis')
        pred = json.load(open(tmp_path / 'out2' / 'preds' / f'{stem}.json'))
        config_classes = cfg.test_dataloader.dataset.metainfo.classes
        assert pred['pred_class'] == config_classes[pred['pred_label']]
        assert not (tmp_path / 'out2' / 'vis').exists()
    # a drawing of the image with the predictions on it
    drawn = np.asarray(Image.open(drawing).convert('RGB'))
    if scope != 'mmpretrain':  # (mmpretrain's drawing adds a text panel)
        assert drawn.shape == picture.shape
    assert drawn.shape != picture.shape or np.abs(drawn.astype(int) - picture).mean() > 1


def test_infer_refuses_a_checkpoint_of_another_model(demo_cwd, demo_models, tmp_path):
    """The classifier's checkpoint for the detector config: tools/test.py's one-line refusal."""
    from addp_mm.errors import UsageError
    ckpt = demo_models['mmpretrain'][2]
    with pytest.raises(UsageError, match=r'CHECKPOINT = .*mmpretrain.pth: this is a classifier '
                                         r'checkpoint .*not a checkpoint of this model; give the '
                                         r'checkpoint a training of this config wrote'):
        run_infer(demo_cwd, CASES['mmdet'][1], osp.join(DEMO, CASES['mmdet'][0]), ckpt,
                  '--out-dir', tmp_path / 'out', '--device', 'cpu')
    assert not (tmp_path / 'out').exists()


def test_infer_mistakes_are_named(demo_cwd, tmp_path):
    """A folder without images, a config of no inferencer's toolbox, a GPU that is not there."""
    from addp_mm.errors import UsageError
    image, config = CASES['mmpretrain'][1], osp.join(DEMO, CASES['mmpretrain'][0])
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('')
    with pytest.raises(UsageError, match=r"IMAGE_OR_FOLDER '.*empty' holds no image file"):
        run_infer(demo_cwd, tmp_path / 'empty', config)
    generation = osp.join(ROOT, 'configs/generation/addp_vit-base-p16_20steps-cosine_in1k-256px.py')
    with pytest.raises(UsageError, match=r"default_scope=None; inference takes a config of mmdet, "
                                         r"mmpretrain, mmseg .*tools/generate.py"):
        run_infer(demo_cwd, image, generation)
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match='--device cuda:0: this machine has no CUDA device'):
            run_infer(demo_cwd, image, config, '--device', 'cuda:0')


PAGE = 'docs/user_guides/inference.md'


def test_the_inference_page_python_blocks_run_as_written(demo_cwd, demo_models, tmp_path):
    """docs/user_guides/inference.md: its three Python blocks (the toolboxes' own inferencers) run
    as written in one session, in a fresh folder holding the demo data and a checkpoint of each
    demo config where the page's commands name it, and predict what the model predicts (its
    commands are tools/infer.py as run above; tests/test_docs.py parses them)."""
    import re

    from test_readme_commands import readme_commands
    os.symlink(demo_cwd / 'data', tmp_path / 'data')
    os.symlink(osp.join(ROOT, 'configs'), tmp_path / 'configs')
    commands = readme_commands('# Inference on your images', PAGE)
    assert len(commands) == 3 and all(c[:2] == ['python', 'tools/infer.py'] for c in commands)
    for argv in commands:
        scope = next(s for s, (name, _) in CASES.items() if argv[3].endswith(name))
        (tmp_path / argv[4]).parent.mkdir(parents=True)
        os.symlink(demo_models[scope][2], tmp_path / argv[4])
    text = open(osp.join(ROOT, PAGE)).read()
    blocks = re.findall(r'```python\n(.*?)```', text[text.index('## From Python'):], re.S)
    assert len(blocks) == 3
    results = {}
    here = os.getcwd()
    os.chdir(tmp_path)
    # mmdet's and mmseg's inferencers set mmengine's default scope for the rest of the session:
    # the one in place before is restored afterwards (the blocks start in mmpretrain's, as in a
    # fresh session where mmpretrain's inferencer builds in its own registries)
    try:
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            for block in blocks:
                namespace = {}
                exec(block, namespace)
                scope = next(s for s in CASES if f'from {s}' in block)
                image = re.search(r"\('(data/demo/[^']+)'", block).group(1)
                results[scope] = namespace['result'], image
    finally:
        os.chdir(here)
    for scope, (result, image) in results.items():
        model, cfg, _ = demo_models[scope]
        ours = own_prediction(scope, model, cfg, str(tmp_path / image))
        stem = osp.splitext(osp.basename(image))[0]
        if scope == 'mmdet':
            pred, inst = result['predictions'][0], ours.pred_instances
            np.testing.assert_allclose(pred['scores'], inst.scores.numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(pred['bboxes'], inst.bboxes.numpy(), rtol=1e-5, atol=1e-3)
            assert (tmp_path / 'outputs' / 'det' / 'preds' / f'{stem}.json').is_file()
        elif scope == 'mmseg':
            np.testing.assert_array_equal(result['predictions'], ours.pred_sem_seg.data[0].numpy())
            assert (tmp_path / 'outputs' / 'seg' / 'vis' / osp.basename(image)).is_file()
        else:
            np.testing.assert_allclose(result['pred_scores'], ours.pred_score.numpy(),
                                       rtol=1e-5, atol=1e-6)
            assert result['pred_class'] == CLASSES[scope][result['pred_label']]
            assert (tmp_path / 'outputs' / f'{stem}.png').is_file()


def test_an_inferencer_leaves_the_runtimes_visualizer_name_to_a_later_runner():
    """The toolboxes' runtimes name their visualizer 'visualizer'; mmengine hands an existing
    instance of that name to a runner built later in the process, which then writes no logs. The
    inferencer init_inferencer makes takes a name of its own."""
    from mmengine.visualization import Visualizer

    from addp_mm.apis.inference import init_inferencer
    with fresh_mmengine_instances():  # (an earlier runner in this process may have made one)
        inferencer = init_inferencer(osp.join(DEMO, CASES['mmdet'][0]), device='cpu')
        assert inferencer.visualizer is not None
        assert inferencer.visualizer.instance_name.startswith('mmdet_inferencer_')
        assert not Visualizer.check_instance_created('visualizer')
        assert not type(inferencer.visualizer).check_instance_created('visualizer')
