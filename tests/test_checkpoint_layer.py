"""The checkpoint layer on its own: the pure converters on hand-made state dicts (no model), and
load_weights' policies and report on a two-layer module."""
import pytest
import torch
import torch.nn as nn

from addp_mm.checkpoint import (COMPLETE, ENCODER, PARTIAL, STRICT, CheckpointMismatchError,
                                addp_state_dict, checkpoint_kind, encoder_state_dict,
                                finetune_classifier_state_dict, load_weights, mage_state_dict,
                                model_state_dict, vqgan_state_dict)
from addp_mm.checkpoint.converters import release_decoder_state_dict, rename_encoder_keys


def tensors(*keys):
    return {k: torch.full((1,), float(i)) for i, k in enumerate(keys)}


# the release's pretraining file: encoder (release names), decoder, frozen parts
RELEASE = tensors('cls_token', 'pos_embed', 'patch_embed.proj.weight', 'blocks.0.attn.qkv.weight',
                  'tokenizer_norm.weight', 'norm.weight', 'decoder_embed.weight', 'mask_token',
                  'decoder_pos_embed_learned', 'decoder_blocks.0.mlp.fc1.weight',
                  'decoder_norm.bias', 'mlm_layer.bias', 'token_emb.weight',
                  'decoder_pred.weight', 'vqgan.encoder.conv_in.weight',
                  'token_predictor.token_emb.word_embeddings.weight',
                  'token_predictor.vqgan.decoder.conv_out.weight')


def test_encoder_converter_renames_and_keeps_only_the_encoder():
    out = encoder_state_dict(RELEASE)
    assert set(out) == {'cls_token', 'pos_embed', 'patch_embed.proj.weight',
                        'blocks.0.attn.qkv.weight', 'pre_norm.weight', 'norm.weight'}
    assert out['pre_norm.weight'] is RELEASE['tokenizer_norm.weight']  # not copied
    # ours (backbone.*, inside a whole model) gives the same names
    ours = {f'backbone.{k}': v for k, v in out.items()}
    ours['neck.mask_token'] = torch.zeros(1)
    assert encoder_state_dict(ours) == out


def test_release_pretraining_file_to_addp_keys():
    out = addp_state_dict(RELEASE)
    assert set(out) == {
        'backbone.cls_token', 'backbone.pos_embed', 'backbone.patch_embed.proj.weight',
        'backbone.blocks.0.attn.qkv.weight', 'backbone.pre_norm.weight', 'backbone.norm.weight',
        'neck.decoder_embed.weight', 'neck.mask_token', 'neck.pos_embed',
        'neck.blocks.0.mlp.fc1.weight', 'neck.norm.bias', 'neck.mlm_head.bias',
        'neck.token_emb.weight'}
    # decoder_pred (unused by the release's forward) and the frozen parts are left out
    assert 'decoder_pred.weight' not in release_decoder_state_dict(RELEASE)
    # one of ours stays as it is, without the frozen parts
    ours = dict(out, **{'target_generator.tokenizer.quantize.embedding.weight': torch.zeros(1)})
    assert addp_state_dict(ours) == out


def test_finetune_classifier_converter():
    release = tensors('cls_token', 'blocks.0.norm1.weight', 'fc_norm.weight', 'head.weight',
                      'head.bias')
    out = finetune_classifier_state_dict(release)
    assert set(out) == {'backbone.cls_token', 'backbone.blocks.0.norm1.weight',
                        'backbone.fc_norm.weight', 'head.fc.weight', 'head.fc.bias'}
    assert out['head.fc.bias'] is release['head.bias']


def test_frozen_part_converters():
    assert set(mage_state_dict(RELEASE)) == {'token_emb.word_embeddings.weight'}
    mage = tensors('token_emb.word_embeddings.weight', 'vqgan.decoder.conv_out.weight')
    assert set(mage_state_dict(mage)) == {'token_emb.word_embeddings.weight'}
    assert set(vqgan_state_dict(RELEASE)) == {'encoder.conv_in.weight'}
    bare = tensors('encoder.conv_in.weight', 'quantize.embedding.weight', 'loss.discriminator.w')
    assert set(vqgan_state_dict(bare)) == {'encoder.conv_in.weight', 'quantize.embedding.weight'}
    assert set(vqgan_state_dict(RELEASE, prefix='token_predictor.vqgan.')) == {
        'decoder.conv_out.weight'}
    with pytest.raises(KeyError, match='no VQGAN weights'):
        vqgan_state_dict(tensors('blocks.0.weight'))


def test_rename_encoder_keys_as_the_pre_hook_sees_them():
    inside = {'backbone.model': {'tokenizer_norm.weight': 1, 'blocks.0.w': 2, 'decoder_norm.b': 3}}
    rename_encoder_keys(inside, 'backbone.')
    assert inside == {'backbone.pre_norm.weight': 1, 'backbone.blocks.0.w': 2,
                      'backbone.decoder_norm.b': 3}
    whole = {'backbone.cls_token': 1, 'backbone.norm.weight': 2, 'neck.x': 3}
    rename_encoder_keys(whole)
    assert whole == {'cls_token': 1, 'norm.weight': 2, 'neck.x': 3}


@pytest.mark.parametrize('keys, kind', [
    (list(RELEASE), 'addp'),
    (['backbone.blocks.0.w', 'neck.mlm_head.bias'], 'addp'),
    (['backbone.blocks.0.w', 'rpn_head.conv.weight'], 'detector'),
    (['backbone.blocks.0.w', 'decode_head.conv_seg.weight'], 'segmenter'),
    (['backbone.blocks.0.attn.qkv.weight', 'head.fc.weight'], 'classifier'),
    (['backbone.blocks.0.attn.qkv.weight', 'backbone.pos_embed'], 'encoder'),
    (['token_emb.word_embeddings.weight', 'blocks.0.w'], 'token_predictor'),
    (['encoder.conv_in.weight', 'quantize.embedding.weight'], 'tokenizer'),
    (['foo.bar'], 'unknown'),
    (['mlm_layer.bias', 'blocks.0.w'], 'unknown'),  # the release's decoder head needs token_emb
    (['token_emb.weight', 'pos_embed'], 'unknown'),
    (['backbone.blocks.0.w', 'roi_head.bbox_head.fc_cls.weight'], 'detector'),
    (['backbone.blocks.0.w', 'bbox_head.cls_convs.0.weight'], 'detector'),
    (['token_predictor.token_emb.word_embeddings.weight', 'token_predictor.blocks.0.w'],
     'token_predictor'),
    (['tokenizer.encoder.conv_in.weight'], 'tokenizer'),
    (['blocks.0.attn.qkv.weight', 'head.weight'], 'classifier'),  # the release's fine-tuning
    (['blocks.0.attn.qkv.weight', 'pos_embed'], 'encoder'),
])
def test_checkpoint_kind(keys, kind):
    assert checkpoint_kind(dict.fromkeys(keys)) == kind


def test_model_state_dict_picks_the_converter_that_fits():
    model = ['backbone.cls_token', 'backbone.pre_norm.weight', 'head.fc.weight', 'head.fc.bias']
    release = tensors('cls_token', 'tokenizer_norm.weight', 'head.weight', 'head.bias')
    state, name = model_state_dict(release, model)
    assert name == 'finetune_classifier_state_dict' and set(state) == set(model)
    ours = tensors(*model)
    assert model_state_dict(ours, model) == (ours, 'as saved')


def test_converters_edge_layouts():
    t = torch.zeros(1)
    # ours, backbone only (fc_norm too) or neck only: as it is
    ours = {'backbone.blocks.0.norm1.weight': t, 'backbone.fc_norm.weight': t}
    assert addp_state_dict(ours) == ours
    assert addp_state_dict({'neck.mask_token': t}) == {'neck.mask_token': t}
    # the release's fine-tuning file given as a pretraining one: its fc_norm is left out
    assert addp_state_dict({'blocks.0.norm1.weight': t, 'fc_norm.weight': t}) == {
        'backbone.blocks.0.norm1.weight': t}
    # a file with backbone.* keys is not converted again (even with release names inside)
    state = {'backbone.tokenizer_norm.weight': t}
    assert model_state_dict(state, ['backbone.pre_norm.weight']) == (state, 'as saved')
    with pytest.raises(KeyError, match=r"no VQGAN weights with prefix 'tokenizer.'"):
        vqgan_state_dict({'encoder.conv_in.weight': t}, prefix='tokenizer.')
    with pytest.raises(KeyError, match=r"got e.g. \['a', 'b', 'c', 'd', 'e'\]\. The"):
        vqgan_state_dict(dict.fromkeys('abcdef'))


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.b = nn.Linear(2, 1)


def test_load_weights_policies_and_report(tmp_path):
    src = Two()
    full = src.state_dict()
    dst = Two()
    report = load_weights(dst, full, policy=STRICT, name='two.pth')
    assert sorted(report.used) == sorted(full) and report.ignored == report.initialised == []
    assert torch.equal(dst.b.weight, src.b.weight)
    # a file saved to disk is read safely and gives the same report
    torch.save({'state_dict': full}, tmp_path / 'two.pth')
    assert load_weights(Two(), str(tmp_path / 'two.pth')).used == report.used
    assert 'loaded 4 tensors from two.pth' in report.summary('Two')

    half = {k: v for k, v in full.items() if k.startswith('a.')}
    with pytest.raises(CheckpointMismatchError, match=r'does not hold every tensor.*b\.weight'):
        load_weights(Two(), half, policy=COMPLETE, name='half.pth')
    partial = load_weights(Two(), half, policy=PARTIAL)
    assert sorted(partial.initialised) == ['b.bias', 'b.weight']

    extra = dict(full, **{'c.weight': torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError, match='holds tensors the model does not have'):
        load_weights(Two(), extra, policy=STRICT)
    assert load_weights(Two(), extra, policy=PARTIAL).ignored == ['c.weight']

    # less than half of the file fits: another architecture
    mostly_other = dict(half, **tensors('x.0', 'x.1', 'x.2'))
    with pytest.raises(CheckpointMismatchError, match='only 2 of its 5 tensors fit'):
        load_weights(Two(), mostly_other, policy=PARTIAL)
    with pytest.raises(CheckpointMismatchError, match='no tensor of it fits'):
        load_weights(Two(), tensors('x.0'), policy=PARTIAL)
    # shapes name both sides
    wrong = dict(full, **{'b.weight': torch.zeros(3, 2)})
    with pytest.raises(CheckpointMismatchError, match=r'b\.weight \(3, 2\) in the file vs \(1, 2\)'):
        load_weights(Two(), wrong)


def test_encoder_policy_requires_blocks_not_new_rel_pos_tables():
    assert ENCODER.required is not None
    import re
    assert re.search(ENCODER.required, 'blocks.3.mlp.fc1.weight')
    assert re.search(ENCODER.required, 'patch_embed.proj.weight')
    assert not re.search(ENCODER.required, 'blocks.3.attn.rel_pos_h')
    assert not re.search(ENCODER.required, 'fc_norm.weight')


def test_a_missing_file_is_said_one_way_wherever_it_is_read(tmp_path, monkeypatch):
    """A tool's argument, a config key's checkpoint, a frozen part's file and a file read by the
    library: one error type (a UsageError and a FileNotFoundError), one wording, the release hint
    only for a released file (or a frozen part, whose source is known)."""
    import re

    from mmengine.config import Config

    from addp_mm.checkpoint import read_checkpoint, require_file
    from addp_mm.engine.runner import check_frozen_checkpoints
    from addp_mm.errors import MissingFileError, UsageError
    from conftest import tool
    monkeypatch.chdir(tmp_path)
    shape = re.compile(r"^(.+?) '(.+)' not found \(looked in (.+)\)\. (.+)$")
    errors = []
    for call in (lambda: read_checkpoint('mine/epoch_3.pth', 'load_from'),
                 lambda: require_file('mine/epoch_3.pth', '--resume checkpoint'),
                 lambda: tool('cli').require_file('addp-vit-base-16.pth', 'CHECKPOINT'),
                 lambda: check_frozen_checkpoints(Config(dict(model=dict(target_generator=dict(
                     tokenizer=dict(checkpoint='my_vqgan.ckpt'))))))):
        with pytest.raises(MissingFileError) as info:
            call()
        assert isinstance(info.value, (UsageError, FileNotFoundError))
        errors.append(str(info.value))
    parts = [shape.match(e) for e in errors]
    assert all(parts), errors
    assert [p.group(3) for p in parts] == [str(tmp_path)] * 4
    assert parts[0].group(4) == parts[1].group(4) == 'Check the path.'
    assert 'the ADDP release' in parts[2].group(4)  # a released file's name
    assert parts[3].group(1) == 'model.target_generator.tokenizer.checkpoint'
    assert 'the MAGE release' in parts[3].group(4)  # a frozen part's own file
    # a folder for a file
    with pytest.raises(UsageError, match="is a folder, not a file"):
        require_file(str(tmp_path), 'load_from')
