"""``ADDPNoiser``: the frozen noising process of an ADDP pretraining step (its target generator).

    pixels x (RGB in [0, 1])
      -> tokenizer.encode ...................... codes z0 and token ids idx0 (B x N)
      -> mask_schedule.draw .................... mask_t ⊂ mask_next (one step per batch)
      -> token_predictor.predict(idx0, masks) .. distributions over the codebook at every position:
                                                 under mask_next (-> soft codes) and under mask_t
                                                 (-> the training target)
      -> z_t = soft codes where mask_t, z0 elsewhere
      -> tokenizer.decode(z_t) ................. the pixels x_t of step t

It holds the VQGAN tokenizer, the MAGE token predictor (optional: generation does not use it) and
the mask schedule, like mmpretrain's frozen ``target_generator`` of BEiT v2. It is frozen here and
only here: no parameter requires grad, ``train()`` keeps it in eval mode, its parts run their
inference forms (``inference_form``, :func:`~addp_mm.models.layers.optimize_for_inference`), and their
weights are left out of every ``state_dict`` (they come from their own files, read by
:meth:`init_weights`); loading a state dict without them keeps the current ones.
"""
from typing import Dict, Optional

import torch
from mmengine.model import BaseModule
from mmengine.registry import MODELS, TASK_UTILS

from addp_mm.checkpoint import WEIGHT_SOURCES
from addp_mm.errors import UsageError

from ..utils.frozen import keep_out_of_state_dict
from ..utils.precision import check_frozen_mode, frozen_precisions
from ..layers.inference import optimize_for_inference
from .mage_token_predictor import fit_to_tokenizer

# the frozen parts and where their files come from (a key of WEIGHT_SOURCES)
FROZEN_PARTS = {'tokenizer': 'vqgan', 'token_predictor': 'token_predictor'}


@MODELS.register_module()
class ADDPNoiser(BaseModule):
    """Frozen tokenizer + token predictor + mask schedule: the ``x_t`` and the targets of a step.

    Args:
        tokenizer (dict): the ``VQGANTokenizer`` (with its ``checkpoint``).
        token_predictor (dict, optional): the ``MAGETokenPredictor`` (with its ``checkpoint``);
            ``codebook_size`` and ``grid_size`` default to the tokenizer's ``n_embed`` and its grid
            at ``resolution``. Only training needs it.
        mask_schedule (dict): the ``MaskSchedule`` (``TASK_UTILS``).
        inference_form (bool): run the frozen parts in their inference forms (layouts, in-place
            and fused sums: :mod:`addp_mm.models.layers.inference`); ``False`` keeps the
            reference modules.
        precision (str, optional): the frozen parts' precision as a whole, one of
            :data:`~addp_mm.models.utils.precision.FROZEN_MODES` (``'fp32'``, ``'fast'``,
            ``'release'``: every part follows the AMP dtype, ``'auto'``: ``'release'`` under the
            caller's autocast, else ``'fast'``);
            ``None``: each part keeps its own ``precision`` / ``encode_precision``.
        config_key (str): how configs name this module, for error messages.
    """

    def __init__(self, tokenizer: Dict, token_predictor: Optional[Dict] = None,
                 mask_schedule: Dict = dict(type='MaskSchedule'), inference_form: bool = True,
                 precision: Optional[str] = None, config_key: str = 'model.target_generator'):
        super().__init__()
        self.config_key = config_key
        self.precision = check_frozen_mode(precision, f'{config_key}.precision')
        self.tokenizer = MODELS.build(tokenizer)
        if token_predictor is not None:
            token_predictor = MODELS.build(fit_to_tokenizer(token_predictor, self.tokenizer))
        self.token_predictor = token_predictor
        self.mask_schedule = TASK_UTILS.build(mask_schedule)
        # frozen: here and nowhere else
        self.requires_grad_(False)
        super().train(False)
        if inference_form:
            for name in FROZEN_PARTS:
                optimize_for_inference(getattr(self, name))
        keep_out_of_state_dict(self, tuple(FROZEN_PARTS))

    # ------------------------------------------------------------------ frozen
    def train(self, mode: bool = True) -> 'ADDPNoiser':
        """Stays in eval mode whatever ``mode`` is."""
        return super().train(False)

    def init_weights(self) -> None:
        """Read each part's checkpoint file (a missing one names its config key and where the
        file comes from); a part without one keeps random weights (demos and tests)."""
        for name in FROZEN_PARTS:
            part = getattr(self, name)
            if part is None:
                continue
            if part.checkpoint is None:
                part.init_weights()
            else:
                part.load_checkpoint(part.checkpoint, key=f'{self.config_key}.{name}.checkpoint')

    def frozen_state_dict(self) -> Dict[str, torch.Tensor]:
        """The weights that :meth:`state_dict` leaves out."""
        return {f'{name}.{k}': v for name in FROZEN_PARTS if getattr(self, name) is not None
                for k, v in getattr(self, name).state_dict().items()}

    # ------------------------------------------------------------------ a step
    @torch.no_grad()
    def forward(self, inputs: torch.Tensor, mask_t: Optional[torch.Tensor] = None,
                mask_next: Optional[torch.Tensor] = None) -> Dict:
        """The noised state of ``inputs`` (``B x 3 x H x W`` RGB in [0, 1]).

        Masks are drawn from the schedule unless both are given (``B x N``, 1 = masked).

        Returns:
            dict: ``x_t`` (pixels of step t, unclamped), ``indices`` (token ids ``B x N``),
            ``mask_t``, ``mask_next``, ``target`` (the token predictor's distribution under
            ``mask_t``, ``B x K x h x w``), ``z_t`` (the codes decoded into ``x_t``) and
            ``num_masked`` (masked positions per row of ``mask_t``: a host int when the masks
            were drawn, else ``None``).
        """
        if self.token_predictor is None:
            raise UsageError(f'{self.config_key}.token_predictor is None: training needs the '
                               f"frozen MAGE token predictor, from {WEIGHT_SOURCES['token_predictor']}")
        precision = frozen_precisions(self.precision, inputs.device)
        z0, indices = self.tokenizer.encode(inputs, precision.encode)
        B, N = indices.shape
        num_masked = None
        if mask_t is None or mask_next is None:
            drawn = self.mask_schedule.draw(B, N, device=inputs.device)
            mask_t, mask_next = drawn.mask_t, drawn.mask_next
            num_masked = drawn.num_masked_t
        target, probs_next = self.token_predictor.predict(indices, [mask_t, mask_next],
                                                          precision.predictor)
        x_t, z_t = self.tokenizer.decode_mixed(mask_t, probs_next, z0, precision.decode)
        return dict(x_t=x_t, indices=indices, mask_t=mask_t, mask_next=mask_next, target=target,
                    z_t=z_t, num_masked=num_masked)
