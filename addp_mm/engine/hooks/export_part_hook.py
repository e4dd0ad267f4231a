"""``ExportPartHook``: at the end of training, write one submodule's weights as the file its own
loader reads (``{'state_dict': ..., 'meta': ...}``, keys without the submodule's prefix).

    custom_hooks = [dict(type='ExportPartHook', part='tokenizer', filename='tokenizer.pth')]
    -> WORK_DIR/tokenizer.pth, loaded by VQGANTokenizer(checkpoint=...)

Like ``ADDPPretrainRunner.export_backbone`` for the encoder; used by the toy chain
(``configs/toy/``) for the trained tokenizer and token predictor.
"""
import os.path as osp
from typing import Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS


@HOOKS.register_module()
class ExportPartHook(Hook):
    """Args:
        part (str): attribute path of the submodule in the model (``'tokenizer'``,
            ``'token_predictor'``; dots for nested ones).
        filename (str): file name in the work dir (or an absolute path).
        meta (dict, optional): extra entries for the file's ``meta``.
    """

    priority = 'VERY_LOW'

    def __init__(self, part: str, filename: str, meta: Optional[dict] = None):
        self.part = part
        self.filename = filename
        self.meta = dict(meta or {})

    def module_of(self, runner) -> torch.nn.Module:
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        module = model
        for name in self.part.split('.'):
            if not hasattr(module, name):
                raise AttributeError(f'ExportPartHook: {type(model).__name__} has no part '
                                     f'{self.part!r} (custom_hooks ... part=...)')
            module = getattr(module, name)
        return module

    def export(self, runner) -> str:
        path = osp.join(runner.work_dir, self.filename)  # an absolute filename stays as it is
        module = self.module_of(runner)  # checked on every rank
        if is_main_process():
            state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
            meta = dict(iter=runner.iter, epoch=runner.epoch, part=self.part,
                        type=type(module).__name__, source='addp_mm training', **self.meta)
            torch.save(dict(state_dict=state, meta=meta), path)
            print_log(f'exported {self.part} ({type(module).__name__}) to {path}', logger='current')
        return path

    def before_train(self, runner) -> None:
        self.module_of(runner)  # a wrong part name fails before training, not after

    def after_train(self, runner) -> None:
        self.export(runner)
