"""Reference rows of the encoder as a backbone: ``encoder_out``, ``encoder_block_outputs`` (the
pretraining encoder, with the pre-norm), ``ft_features`` / ``ft_logits`` (the released fine-tuning
classifier: no pre-norm, average pooling, ``fc_norm``) and the fine-tuning load's key lists."""
from mmengine.registry import MODELS

from addp_mm.checkpoint import finetune_classifier_state_dict, read_checkpoint, unwrap_state_dict
from .core import ReferenceDir, compare, register_check

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def encoder_arch(cfg: dict) -> dict:
    """``ADDPViT`` arch dict from a vectors file's ``config``."""
    dim = cfg['embed_dim']
    return dict(embed_dims=dim, num_layers=cfg['depth'], num_heads=cfg['num_heads'],
                feedforward_channels=int(dim * cfg.get('mlp_ratio', 4.0)))


def normalise(img):
    """ImageNet mean/std normalisation of [0, 1] pixels (as the release's encoder input)."""
    mean = img.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = img.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (img.clamp(0, 1) - mean) / std


def build_encoder(ref: ReferenceDir, **kwargs):
    cfg = ref.config
    model = MODELS.build(dict(type='ADDPViT', arch=encoder_arch(cfg), img_size=cfg['img_size'],
                              patch_size=cfg['patch_size'], **kwargs))
    return model


@register_check
def encoder_rows(ref: ReferenceDir):
    v = ref.vectors
    enc = build_encoder(ref, pre_norm=True, final_norm=True, out_type='raw', out_indices=-1,
                        init_cfg=dict(type='Pretrained', checkpoint=ref.file('addp')))
    enc.init_weights()
    enc.eval()
    blocks = build_encoder(ref, pre_norm=True, final_norm=False, out_type='raw',
                           out_indices=list(range(ref.config['depth'])),
                           init_cfg=dict(type='Pretrained', checkpoint=ref.file('addp')))
    blocks.init_weights()
    blocks.eval()
    x = normalise(v['img'])
    return [
        compare('encoder_tokens_in', enc.embed(x)[0], v['encoder_tokens_in']),
        compare('encoder_out', enc(x)[0], v['encoder_out']),
        compare('encoder_block_outputs', list(blocks(x)), v['encoder_block_outputs']),
    ]


def build_finetune_classifier(ref: ReferenceDir, checkpoint=None):
    """The release's fine-tuning classifier as an mmpretrain ``ImageClassifier`` around ADDPViT."""
    cfg = ref.config
    return MODELS.build(dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type='ADDPViT', arch=encoder_arch(cfg), img_size=cfg['img_size'],
                      patch_size=cfg['patch_size'], out_type='avg_featmap', final_norm=False,
                      init_cfg=None if checkpoint is None else dict(type='Pretrained', checkpoint=checkpoint)),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=cfg['num_classes'],
                  in_channels=cfg['embed_dim'])))


@register_check
def finetune_rows(ref: ReferenceDir):
    v = ref.vectors
    # 1. what loading the pretraining checkpoint into the classifier uses, ignores and initialises
    model = build_finetune_classifier(ref, checkpoint=ref.file('addp'))
    report = model.backbone.load_pretrained(ref.file('addp'))
    own_head = [k for k, _ in model.head.fc.named_parameters()]
    missing = report['initialised'] + [f'head.{k}' for k in own_head]
    rows = [compare('ft_missing_keys', missing, v['ft_missing_keys']),
            compare('ft_unexpected_keys', report['ignored'], v['ft_unexpected_keys'])]
    # 2. the released fine-tuned classifier, converted, reproduces its features and logits
    model = build_finetune_classifier(ref)
    state = finetune_classifier_state_dict(unwrap_state_dict(
        read_checkpoint(ref.file('finetune'), 'release fine-tuning checkpoint')))
    model.load_state_dict(state, strict=True)
    model.eval()
    x = normalise(v['img'])
    backbone = model.backbone
    tokens, hw = backbone.embed(x)
    for block in backbone.blocks:
        tokens = block(tokens, hw)
    rows += [compare('ft_features', tokens, v['ft_features']),
             compare('ft_pooled', model.extract_feat(x)[0], v['ft_pooled']),
             compare('ft_logits', model(x, mode='tensor'), v['ft_logits'])]
    return rows
