"""``ADDPPretrainRunner``: mmengine's ``Runner`` with what ADDP pretraining needs.

- Before anything is built or loaded it checks the frozen parts' checkpoint files, naming the
  config key and the file in the error.
- The frozen tokenizer and token predictor (``model.target_generator``, an ``ADDPNoiser``) stay out
  of the optimizer (checked) and out of the saved checkpoints (the noiser leaves them out); on
  resume they come from their own files again.
- At the end of training it exports ``backbone.pth`` (encoder only), which
  ``ADDPViT(init_cfg=dict(type='Pretrained', checkpoint=...))`` loads.
"""
import os.path as osp

import torch
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from addp_mm.checkpoint import require_file
from addp_mm.errors import UsageError
from addp_mm.models.target_generators.addp_noiser import FROZEN_PARTS


def check_frozen_checkpoints(cfg) -> None:
    """Fail early and clearly when a frozen part's checkpoint file is missing; log loudly when a
    part has none (random weights: only for demos and tests)."""
    noiser = cfg.get('model', {}).get('target_generator') or {}
    for name, source in FROZEN_PARTS.items():
        part = noiser.get(name)
        if part is None:
            continue
        key = f'model.target_generator.{name}.checkpoint'
        ckpt = part.get('checkpoint')
        if ckpt is None:
            print_log(f'{key} is None: the {name} is RANDOMLY INITIALISED. This is only meaningful '
                      'for demos and tests; real pretraining needs the released weights.',
                      logger='current', level=30)
        else:
            require_file(ckpt, key, source=source)


@RUNNERS.register_module()
class ADDPPretrainRunner(Runner):
    """Runner for ``configs/pretrain`` (``runner_type = 'ADDPPretrainRunner'``)."""

    BACKBONE_FILE = 'backbone.pth'

    @classmethod
    def from_cfg(cls, cfg) -> 'ADDPPretrainRunner':
        check_frozen_checkpoints(cfg)
        return super().from_cfg(cfg)

    def build_optim_wrapper(self, optim_wrapper):
        wrapper = super().build_optim_wrapper(optim_wrapper)
        model = self.model.module if hasattr(self.model, 'module') else self.model
        noiser = getattr(model, 'target_generator', None)
        frozen = {id(p) for p in noiser.parameters()} if noiser is not None else set()
        optimizers = wrapper.optim_wrappers.values() if hasattr(wrapper, 'optim_wrappers') else [wrapper]
        for w in optimizers:
            for group in w.optimizer.param_groups:
                if any(id(p) in frozen for p in group['params']):
                    raise UsageError('the optimizer holds parameters of the frozen tokenizer / token '
                                     "predictor: use constructor='LayerDecayOptimWrapperConstructor' "
                                     '(it leaves out parameters without requires_grad)')
        return wrapper

    def train(self):
        model = super().train()
        self.export_backbone()
        return model

    def export_backbone(self, path=None) -> str:
        """Write the encoder's weights (``{'state_dict': {'backbone.*': ...}, 'meta': ...}``) for
        downstream use."""
        path = path or osp.join(self.work_dir, self.BACKBONE_FILE)
        if is_main_process():
            model = self.model.module if hasattr(self.model, 'module') else self.model
            # named as in the whole model (backbone.*): mmengine's load_checkpoint of a
            # detector / segmenter / classifier, their init_cfg and ADDPViT itself all read it
            state = {f'backbone.{k}': v.detach().cpu()
                     for k, v in model.backbone.state_dict().items()}
            meta = dict(epoch=self.epoch, iter=self.iter, source='addp_mm pretraining',
                        arch=dict(model.backbone.arch_settings), img_size=list(model.backbone.img_size),
                        patch_size=model.backbone.patch_size)
            torch.save(dict(state_dict=state, meta=meta), path)
            print_log(f'exported the pretrained encoder to {path}', logger='current')
        return path
