"""Our model index (``model-index.yml``, OpenMMLab's format: one ``configs/<task>/metafile.yml``
per folder) registered with mmpretrain's ``ModelHub`` when ``addp_mm`` is imported, so that
``mmpretrain.list_models('*addp*')``, ``get_model(NAME, pretrained=PATH)`` and
``inference_model(NAME, image)`` work for our models that build in mmpretrain's scope, as for
mmpretrain's own.

Every model of every metafile whose config's ``default_scope`` is ``'mmpretrain'`` is registered
(pretraining, ImageNet fine-tuning and linear probing, the demo classifier, the toy chain); the
mmdet and mmseg models of a metafile are left out (mmpretrain cannot build them). Every name in
the index carries ``addp``, as mmpretrain's names carry their recipe (``mae_vit-base-p16_...``,
``vit-base-p16_mae-300e-pre_...``, ``vit-base-p16_32xb128-mae_in1k``): a name is its config's
file name, and where that lacks ``addp``, the file name with ``-addp`` after its batch field
(``vit-demo-p16_1xb32-30e_demo-in1k-128px.py`` is ``vit-demo-p16_1xb32-addp-30e_demo-in1k-128px``).

mmdet's ``DetInferencer`` and mmseg's ``MMSegInferencer`` look model names up only in their own
package's index (``<package>/.mim/model-index.yml``); give them our config paths instead
(``tools/infer.py``). Nothing here downloads: the models' ``Weights`` are null (the released files
are local paths, ``docs/user_guides/weights.md``). Configs are read from the repository (an
editable install); without them nothing is registered.
"""
import ast
import functools
import importlib.util
import os.path as osp
from typing import List, Optional

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODEL_INDEX = 'model-index.yml'

__all__ = ['register_with_mmpretrain', 'config_scope', 'MODEL_INDEX', 'REPO_ROOT']


def _top_level(path: str) -> dict:
    """The literal ``_base_`` and ``default_scope`` assignments of a python config (not run)."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    found = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in ('_base_', 'default_scope')):
            found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


def _base_file(base: str, path: str) -> Optional[str]:
    """Where mmengine finds a ``_base_`` entry: beside ``path``, or ``pkg::rel`` in the installed
    package's ``.mim/configs`` (``None`` when the package is not installed)."""
    if '::' not in base:
        return osp.join(osp.dirname(path), base)
    package, rel = base.split('::', 1)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return osp.join(spec.submodule_search_locations[0], '.mim', 'configs', rel)


@functools.lru_cache(maxsize=None)
def config_scope(path: str) -> Optional[str]:
    """The ``default_scope`` the config at ``path`` resolves to (its own, else its bases'), read
    from the files without building the config (``Config.fromfile`` of every index entry would
    take seconds at import)."""
    found = _top_level(path)
    if 'default_scope' in found:
        return found['default_scope']
    bases = found.get('_base_', [])
    for base in [bases] if isinstance(bases, str) else bases:
        file = _base_file(base, path)
        scope = config_scope(file) if file and osp.isfile(file) else None
        if scope is not None:  # mmengine refuses a key set by two bases: the first one found
            return scope
    return None


def register_with_mmpretrain(root: str = REPO_ROOT) -> List[str]:
    """Register the mmpretrain-scope models of ``root/model-index.yml`` with mmpretrain's
    ``ModelHub`` (once); returns the names added."""
    try:
        from mmpretrain.apis import ModelHub
        from modelindex.load_model_index import load
    except ImportError:  # mmpretrain (and its modelindex) not installed: nothing to register
        return []
    index_file = osp.join(root, MODEL_INDEX)
    if not osp.isfile(index_file):
        return []
    index = load(index_file)
    index.build_models_with_collections()
    added = []
    for model in index.models:
        name, config = model.name.lower(), osp.join(root, model.config)
        if ModelHub.has(name) or not osp.isfile(config) or config_scope(config) != 'mmpretrain':
            continue
        # what ModelHub.register_model_index does for each model of a metafile it reads whole
        model.config = config
        ModelHub._models_dict[name] = model
        added.append(name)
    return added
