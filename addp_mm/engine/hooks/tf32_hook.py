"""A hook that sets whether CUDA matmuls and cuDNN convolutions may use TF32."""
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS


def _tf32_flags():
    import torch
    return torch.backends.cuda.matmul, torch.backends.cudnn


@HOOKS.register_module()
class TF32Hook(Hook):
    """Set ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32`` for
    the run, and restore the previous values after it.

    TF32 (Ampere and newer GPUs) runs float32 matmuls / convolutions with a 10-bit mantissa. The
    ADDP release turns it off for pretraining (``main_pretrain.py``), so the pretraining configs
    use ``custom_hooks = [dict(type='TF32Hook', allow_tf32=False)]``. Without a GPU it only
    sets the flags.

    Args:
        allow_tf32: the value of both flags during the run.
    """

    priority = 'VERY_HIGH'

    def __init__(self, allow_tf32: bool = False):
        self.allow_tf32 = bool(allow_tf32)
        self._saved = None

    def before_run(self, runner) -> None:
        matmul, cudnn = _tf32_flags()
        self._saved = (matmul.allow_tf32, cudnn.allow_tf32)
        matmul.allow_tf32 = self.allow_tf32
        cudnn.allow_tf32 = self.allow_tf32
        print_log(f'TF32Hook: TF32 {"allowed" if self.allow_tf32 else "off"} for CUDA matmuls and '
                  'cuDNN convolutions', logger='current')

    def after_run(self, runner) -> None:
        if self._saved is not None:
            matmul, cudnn = _tf32_flags()
            matmul.allow_tf32, cudnn.allow_tf32 = self._saved
            self._saved = None
