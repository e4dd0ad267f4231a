"""Our model index (``model-index.yml``, OpenMMLab's format: one ``configs/<task>/metafile.yml``
per folder) registered with mmpretrain's ``ModelHub`` when ``addp_mm`` is imported, so that
``mmpretrain.list_models('*addp*')``, ``get_model(NAME, pretrained=PATH)`` and
``inference_model(NAME, image)`` work for our mmpretrain-scope models (pretraining, ImageNet
fine-tuning, the toy chain), as for mmpretrain's own.

mmdet's ``DetInferencer`` and mmseg's ``MMSegInferencer`` look model names up only in their own
package's index (``<package>/.mim/model-index.yml``); give them our config paths instead.
Nothing here downloads: the models' ``Weights`` are null (the released files are local paths,
``docs/user_guides/weights.md``). Configs are read from the repository (an editable install);
without them nothing is registered.
"""
import os.path as osp
from typing import List

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# the metafiles whose models build in mmpretrain's scope
MMPRETRAIN_METAFILES = ('configs/pretrain/metafile.yml', 'configs/imagenet/metafile.yml',
                        'configs/toy/metafile.yml')

__all__ = ['register_with_mmpretrain', 'MMPRETRAIN_METAFILES', 'REPO_ROOT']


def register_with_mmpretrain(root: str = REPO_ROOT) -> List[str]:
    """Register the models of :data:`MMPRETRAIN_METAFILES` (once); returns the names added."""
    try:
        from mmpretrain.apis import ModelHub
        from modelindex.load_model_index import load
    except ImportError:  # mmpretrain (and its modelindex) not installed: nothing to register
        return []
    added = []
    for rel in MMPRETRAIN_METAFILES:
        path = osp.join(root, rel)
        if not osp.isfile(path):
            continue
        index = load(path)
        index.build_models_with_collections()
        if all(ModelHub.has(m.name.lower()) for m in index.models):
            continue  # registered already (addp_mm imported again)
        ModelHub.register_model_index(path, config_prefix=root)
        added += [m.name.lower() for m in index.models]
    return added
