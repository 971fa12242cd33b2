#!/usr/bin/env python3
"""Dev-only golden data: three small detectors built and run by OpenTAD's own
code (github.com/sming256/OpenTAD: ActionFormer, TemporalMaxer, TriDet),
written into tests/data/opentad_small/.

OpenTAD re-implements the three detectors with its own module layout
(projection / neck / rpn_head), LayerNorm eps 1e-6 in ConvModule and the FPN,
re-masking after norm + ReLU, no test-time padding for TemporalMaxer
(max-pooled masks), unmasked Trident boundary logits, joint pre-NMS top-k over
all levels, its own 1-D NMS extension and its own config / checkpoint formats.
This script contains none of OpenTAD's code: it imports OpenTAD's files from a
checkout (OPENTAD_ROOT) as single modules of a stand-in package tree (the
package __init__ files that would import every model are skipped), after
putting minimal stand-ins for mmengine (a Registry whose register_module is
an identity decorator that also records the class for build(), a ConfigDict
attribute dict) and for opentad.models.backbones (only needed for end-to-end
backbones) into sys.modules. OpenTAD's NMS extension
(opentad/models/utils/post_processing/nms/nms_cpu.cpp, module nms_1d_cpu,
whose softnms takes t1 / t2) must be built for /usr/bin/python3 and lie in
OPENTAD_ROOT:

  OPENTAD_ROOT=/path/to/OpenTAD /usr/bin/python3 dev/opentad_reference.py [OUT_DIR]

Models: in_channels 32, out / feat channels 32, 5 classes, 6 levels (strides
1..32), max_seq_len 768, every parameter perturbed
(reference_fixtures.perturb_parameters), then the classifier's bias raised
by 3 (scores well above the thresholds) and, but for TriDet, the regression
bias by 1 (else the ReLU clips most offsets to 0); eval mode, batch size 1.
  actionformer   Conv1DTransformerProj arch (2, 2, 5), 4 heads, window 9
                 (max_div_factor 256), FPNIdentity (LN), ActionFormerHead;
                 post-processing as OpenTAD's THUMOS config (pre-NMS 0.001 /
                 top-2000 by getattr default, Soft-NMS sigma 0.5,
                 max_seg_num 2000, min_score 0.001, multiclass).
  temporalmaxer  TemporalMaxerProj arch (2, 0, 5), FPNIdentity
                 (GroupNorm(4, 32, affine=False)), TemporalMaxerHead; no
                 padding at test; pre_nms_topk 2000 / pre_nms_thresh 0.001
                 explicit, max_seg_num 200, iou_threshold 0.
  tridet         TriDetProj arch (2, 2, 5), sgp_mlp_dim 48, k 5, sgp_win_size
                 [1] * 6, init_conv_vars 0.2 (max_div_factor 32),
                 FPNIdentity (LN), TriDetHead num_bins 16,
                 boundary_kernel_size 3; TriDet's own post_processing
                 (hard-coded 0.001 / 2000), max_seg_num 2000.

Writes (OUT_DIR, default tests/data/opentad_small; an optional second
argument, e.g. "actionformer,tridet", limits the models):
  base_dataset.py   the data part of the configs (OpenTAD's layout, written
                    here), shared through _base_ = ["../base_dataset.py", ...]
and per model a folder <model>/ with:
  base_model.py, config.py
        OpenTAD-style Python configs (written here, not copied): config.py
        has _base_ = ["../base_dataset.py", "base_model.py"] and overrides
        nested keys of the base model (THUMOS-like sizes) with the small ones.
  config.json
        the merged config (mmengine semantics: bases merged in order with
        disjoint keys, the child merged recursively into them, lists and
        tuples replaced whole, tuples written as lists), as loaded by this
        script's own merge; the model is built from it.
  weights.pth
        torch.save of an OpenTAD training checkpoint: {"epoch": 3,
        "state_dict", "optimizer", "scheduler", "state_dict_ema"}. Keys are
        prefixed "module." (DDP). state_dict_ema holds the weights the
        expected outputs come from (rpn_head.loss_normalizer int64 0-d, 100);
        state_dict = EMA + 0.01 N(0, 1) noise on every float tensor
        (rpn_head.loss_normalizer float32 0-d, 87.5). optimizer: a real AdamW
        state_dict (model.get_optim_groups: decay / no_decay groups) after one
        step with gradients on rpn_head.cls_head / reg_head / scale only (so
        only those have AdamW state); scheduler: a plain
        dict like LinearWarmupCosineAnnealingLR's state_dict.
  vidNN.npy
        (T, 32) float32 inputs: actionformer and tridet run vid00 (T 300,
        padded to 768), vid01 (768) and vid02 (1000, padded to a multiple of
        max_div_factor); temporalmaxer runs vid00, vid01 and vid03 (1001),
        unpadded.
  vidNN.expected.safetensors (float32), level l = 0..5:
        cls_logits.l (T_l, 5), offsets.l (T_l, 2; TriDet (T_l, 34) = 2 x
        (num_bins + 1), row-major as view(T_l, 2, 17): start bins then end
        bins), fpn_feats.l (T_l, 32) (the neck's outputs) on the valid
        positions of OpenTAD's own mask at that level, offsets after Scale +
        ReLU; TriDet also decoded_offsets.l (T_l, 5, 2) (per class
        [left, right] distances in level-stride units, valid positions) and
        start_logits.l / end_logits.l (P_l, 5) over the WHOLE padded level
        length P_l (OpenTAD does not mask them; the decode reads them).
  expected_detections.json
        per video id: input (npy name), num_feats, fps (30.0), duration
        ((4 T + 12) / 30), snippet_stride (4), offset_frames (8), padded_len
        (the length the projection ran on), level_lens (P_l), valid_lens
        (valid positions per level), detections (OpenTAD's post_processing
        with the meta above, labels via ext_cls = [0..4] so "label_id" is the
        class index, its round() calls shadowed so segment [s, e] in seconds
        and score are unrounded floats of the float32 results; one line per
        detection). OpenTAD's own output rounds them (segments round(v, 2),
        scores round(v, 4)); the script checks that running it unshadowed
        gives exactly Python's round() of these values.
"""
import copy
import importlib
import json
import os
import sys
import types
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_fixtures import (blob_features, output_folder, perturb_parameters, plain,  # noqa: E402
                                write_safetensors)

NUM_CLASSES, C_IN, FPS, SNIPPET_STRIDE, OFFSET_FRAMES = 5, 32, 30.0, 4, 8


# ----------------------------------------------------------------------------
# Importing OpenTAD from a checkout, with stand-ins for mmengine.


class ConfigDict(dict):
    """Attribute access on a dict, as mmengine's ConfigDict (missing -> AttributeError)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name, value):
        self[name] = value

    def copy(self):
        return ConfigDict(self)


def to_config(v):
    if isinstance(v, dict):
        return ConfigDict({k: to_config(x) for k, x in v.items()})
    if isinstance(v, list):
        return [to_config(x) for x in v]
    if isinstance(v, tuple):
        return tuple(to_config(x) for x in v)
    return v


class Registry:
    """mmengine.registry.Registry stand-in: register_module() returns the class
    unchanged (after recording it by name); build(cfg) = cls(**cfg minus type)."""

    def __init__(self, name, **kwargs):
        self.name, self._classes = name, {}

    def register_module(self, name=None, force=False, module=None):
        def record(cls):
            self._classes[name or cls.__name__] = cls
            return cls
        return record(module) if module is not None else record

    def build(self, cfg):
        args = ConfigDict(cfg)
        return self._classes[args.pop('type')](**args)


def use_opentad_checkout(env_var='OPENTAD_ROOT'):
    """Puts OPENTAD_ROOT first on sys.path (OpenTAD's nms_1d_cpu extension must
    be importable from there), installs the stand-ins and imports the needed
    OpenTAD files; returns the detector registry."""
    root = os.environ.get(env_var)
    if not root:
        sys.exit(f'set {env_var} to a checkout of OpenTAD with nms_1d_cpu built in it')
    root = os.path.abspath(root)
    sys.path.insert(0, root)
    import nms_1d_cpu  # noqa: F401  (fails here, not in the middle of a run)
    assert 't1' in (nms_1d_cpu.softnms.__doc__ or ''), "nms_1d_cpu is not OpenTAD's build (no t1 / t2)"

    mm = types.ModuleType('mmengine')
    mm.__path__ = []
    mm_registry = types.ModuleType('mmengine.registry')
    mm_registry.Registry = Registry
    mm.registry = mm_registry
    sys.modules.update({'mmengine': mm, 'mmengine.registry': mm_registry})

    # Package stand-ins whose __init__ (importing every model OpenTAD has) is skipped.
    pkg_root = os.path.join(root, 'opentad')
    for name in ('opentad', 'opentad.models', 'opentad.models.projections', 'opentad.models.necks',
                 'opentad.models.dense_heads', 'opentad.models.detectors', 'opentad.models.losses',
                 'opentad.models.losses.assigner'):
        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(pkg_root, *name.split('.')[1:])]
        sys.modules[name] = pkg
    backbones = types.ModuleType('opentad.models.backbones')

    class BackboneWrapper:  # end-to-end backbones only; these detectors take features
        def __init__(self, cfg):
            raise NotImplementedError('backbones are not part of this reference')
    backbones.BackboneWrapper = BackboneWrapper
    sys.modules['opentad.models.backbones'] = backbones

    for mod in ('losses.focal_loss', 'losses.iou_loss', 'losses.assigner.anchor_free_simota_assigner',
                'dense_heads.prior_generator', 'projections.actionformer_proj', 'projections.temporalmaxer_proj',
                'projections.tridet_proj', 'necks.fpn', 'dense_heads.actionformer_head',
                'dense_heads.temporalmaxer_head', 'dense_heads.tridet_head', 'detectors.actionformer',
                'detectors.temporalmaxer', 'detectors.tridet'):
        importlib.import_module('opentad.models.' + mod)
    return importlib.import_module('opentad.models.builder').MODELS


# ----------------------------------------------------------------------------
# OpenTAD-style Python configs and their merge.

BASE_DATASET = '''\
# The data part of the fixture's configs, in OpenTAD's layout (a THUMOS-style
# feature dataset padded to a fixed length). Written by dev/opentad_reference.py.
root = "data/fixture/"
features = root + "features/"

dataset = dict(
    train=dict(type="ThumosPaddingDataset", ann_file=root + "annotations.json", subset_name="train",
               data_path=features, feature_stride=4, sample_stride=1, offset_frames=8),
    test=dict(type="ThumosPaddingDataset", ann_file=root + "annotations.json", subset_name="test",
              data_path=features, test_mode=True,
              feature_stride=4, sample_stride=1, offset_frames=8),  # 4 x 1 frames per snippet
)
evaluation = dict(type="mAP", subset="test", tiou_thresholds=[0.3, 0.4, 0.5, 0.6, 0.7])
'''

# The model part at a THUMOS-like size; each fixture's config.py shrinks it.
_PRIOR = '''prior_generator=dict(type="PointGenerator", strides=[1, 2, 4, 8, 16, 32],
                                 regression_range=[(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)]),'''
BASE_MODELS = {
    'actionformer': '''\
model = dict(
    type="ActionFormer",
    projection=dict(type="Conv1DTransformerProj", in_channels=2048, out_channels=512, arch=(2, 2, 5),
                    conv_cfg=dict(kernel_size=3, proj_pdrop=0.0), norm_cfg=dict(type="LN"),
                    attn_cfg=dict(n_head=4, n_mha_win_size=19), path_pdrop=0.1, use_abs_pe=False,
                    max_seq_len=2304),
    neck=dict(type="FPNIdentity", in_channels=512, out_channels=512, num_levels=6),
    rpn_head=dict(type="ActionFormerHead", num_classes=20, in_channels=512, feat_channels=512, num_convs=2,
                  cls_prior_prob=0.01, ''' + _PRIOR + '''
                  loss_normalizer=100, loss_normalizer_momentum=0.9, center_sample="radius",
                  center_sample_radius=1.5, label_smoothing=0.0,
                  loss=dict(cls_loss=dict(type="FocalLoss"), reg_loss=dict(type="DIOULoss"))),
)
''',
    'temporalmaxer': '''\
model = dict(
    type="TemporalMaxer",
    projection=dict(type="TemporalMaxerProj", in_channels=2048, out_channels=512, arch=(2, 0, 5),
                    conv_cfg=dict(kernel_size=3), norm_cfg=dict(type="LN")),
    neck=dict(type="FPNIdentity", in_channels=512, out_channels=512, num_levels=6,
              norm_cfg=dict(type="GN", num_groups=4, affine=False)),
    rpn_head=dict(type="TemporalMaxerHead", num_classes=20, in_channels=512, feat_channels=512, num_convs=2,
                  cls_prior_prob=0.01, ''' + _PRIOR + '''
                  loss_normalizer=100, loss_normalizer_momentum=0.9,
                  loss=dict(cls_loss=dict(type="FocalLoss"), reg_loss=dict(type="DIOULoss")),
                  assigner=dict(type="AnchorFreeSimOTAAssigner", iou_weight=2, cls_weight=1.0, center_radius=1.5,
                                keep_percent=1.0, confuse_weight=0.0)),
)
''',
    'tridet': '''\
model = dict(
    type="TriDet",
    projection=dict(type="TriDetProj", in_channels=2048, out_channels=512, sgp_mlp_dim=768, arch=(2, 2, 5),
                    downsample_type="max", sgp_win_size=[1] * 6, k=5, init_conv_vars=0,
                    conv_cfg=dict(kernel_size=3), norm_cfg=dict(type="LN"), path_pdrop=0.1, use_abs_pe=False,
                    max_seq_len=2304, input_noise=0.0005),
    neck=dict(type="FPNIdentity", in_channels=512, out_channels=512, num_levels=6),
    rpn_head=dict(type="TriDetHead", num_classes=20, in_channels=512, feat_channels=512, num_convs=2,
                  cls_prior_prob=0.01, ''' + _PRIOR + '''
                  loss_normalizer=100, loss_normalizer_momentum=0.9, center_sample="radius",
                  center_sample_radius=1.5, label_smoothing=0.0, boundary_kernel_size=3, iou_weight_power=0.2,
                  num_bins=16,
                  loss=dict(cls_loss=dict(type="FocalLoss"), reg_loss=dict(type="DIOULoss"),
                            iou_rate=dict(type="GIOULoss"))),
)
''',
}

_SOLVER = '''solver = dict(train=dict(batch_size=2, num_workers=2), test=dict(batch_size=1, num_workers=1),
              clip_grad_norm=1, ema=True)
'''
_SMALL = '''neck=dict(in_channels=32, out_channels=32),
    rpn_head=dict(num_classes=5, in_channels=32, feat_channels=32),'''
CHILDREN = {
    'actionformer': '''\
# A small ActionFormer in OpenTAD's config layout (dev/opentad_reference.py).
_base_ = ["../base_dataset.py", "base_model.py"]

seq_len = 768
model = dict(
    projection=dict(in_channels=32, out_channels=32, attn_cfg=dict(n_mha_win_size=9), max_seq_len=seq_len,
                    input_pdrop=0.2),
    ''' + _SMALL + '''
)
''' + _SOLVER + '''optimizer = dict(type="AdamW", lr=1e-4, weight_decay=0.05, paramwise=True)
scheduler = dict(type="LinearWarmupCosineAnnealingLR", warmup_epoch=5, max_epoch=35)
post_processing = dict(
    nms=dict(use_soft_nms=True, sigma=0.5, max_seg_num=2000, iou_threshold=0.1, min_score=0.001,
             multiclass=True, voting_thresh=0.7),
    save_dict=False,
)
''',
    'temporalmaxer': '''\
# A small TemporalMaxer in OpenTAD's config layout (dev/opentad_reference.py).
_base_ = ["../base_dataset.py", "base_model.py"]

model = dict(
    projection=dict(in_channels=32, out_channels=32, drop_out=0.2),
    ''' + _SMALL + '''
)
''' + _SOLVER + '''optimizer = dict(type="AdamW", lr=1e-4, weight_decay=0.05, paramwise=True)
scheduler = dict(type="LinearWarmupCosineAnnealingLR", warmup_epoch=5, max_epoch=65)
post_processing = dict(
    pre_nms_topk=2000,
    pre_nms_thresh=0.001,
    nms=dict(use_soft_nms=True, sigma=0.5, max_seg_num=200, iou_threshold=0, min_score=0.001,
             multiclass=True, voting_thresh=0.7),
    save_dict=False,
)
''',
    'tridet': '''\
# A small TriDet in OpenTAD's config layout (dev/opentad_reference.py).
_base_ = ["../base_dataset.py", "base_model.py"]

model = dict(
    projection=dict(in_channels=32, out_channels=32, sgp_mlp_dim=48, init_conv_vars=0.2, max_seq_len=768),
    ''' + _SMALL + '''
)
''' + _SOLVER + '''optimizer = dict(type="AdamW", lr=1e-4, weight_decay=0.025, paramwise=True)
scheduler = dict(type="LinearWarmupCosineAnnealingLR", warmup_epoch=20, max_epoch=40, eta_min=1e-8)
post_processing = dict(
    nms=dict(use_soft_nms=True, sigma=0.5, max_seg_num=2000, min_score=0.001, multiclass=True, voting_thresh=0.7),
    save_dict=False,
)
''',
}


def merge_into(child, base):
    """mmengine's _merge_a_into_b without _delete_ / list index keys: nested
    dicts merge, everything else (lists, tuples, scalars) replaces."""
    out = copy.deepcopy(base)
    for k, v in child.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_into(v, out[k])
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_py_config(path):
    """Executes an OpenTAD-style config file; its module-level names (not
    starting with "__") are the keys; _base_ (relative paths) is merged first."""
    ns = {}
    with open(path) as f:
        exec(compile(f.read(), path, 'exec'), ns)
    bases = ns.pop('_base_', [])
    own = {k: v for k, v in ns.items() if not k.startswith('__')}
    merged = {}
    for b in [bases] if isinstance(bases, str) else bases:
        base = load_py_config(os.path.join(os.path.dirname(path), b))
        dup = merged.keys() & base.keys()
        assert not dup, f'duplicate keys among bases: {dup}'
        merged.update(base)
    return merge_into(own, merged)


# ----------------------------------------------------------------------------
# Running OpenTAD's forward / post-processing and capturing per-level outputs.


def capture_forward(model, kind, x):
    """OpenTAD's forward_test on one video (inputs (1, 32, T), masks all true,
    as its test pipeline's Collect makes them), with hooks on the neck and the
    heads. Returns (predictions, per-level tensors, padded length, level lengths,
    valid lengths)."""
    T = x.shape[0]
    inputs = torch.from_numpy(np.ascontiguousarray(x.T))[None]
    masks = torch.ones(1, T, dtype=torch.bool)
    got = {'cls': [], 'scale': [], 'start': [], 'end': []}
    head = model.rpn_head
    hooks = [model.neck.register_forward_hook(lambda m, i, o: got.__setitem__('neck', o)),
             head.cls_head.register_forward_hook(lambda m, i, o: got['cls'].append(o)),
             model.projection.register_forward_pre_hook(lambda m, i: got.__setitem__('proj_in', i[0]))]
    for s in head.scale:
        hooks.append(s.register_forward_hook(lambda m, i, o: got['scale'].append(o)))
    if kind == 'tridet':
        hooks.append(head.cls_start_head.register_forward_hook(lambda m, i, o: got['start'].append(o)))
        hooks.append(head.cls_end_head.register_forward_hook(lambda m, i, o: got['end'].append(o)))
    try:
        with torch.no_grad():
            predictions = model.forward_test(inputs, masks, metas=None, infer_cfg=None)
    finally:
        for h in hooks:
            h.remove()
    feats, fmasks = got['neck']
    level_lens = [int(m.shape[-1]) for m in fmasks]
    valid_lens = [int(m.sum()) for m in fmasks]
    tensors = {}
    for l, m in enumerate(fmasks):
        valid = m[0].numpy().astype(bool)
        tensors[f'fpn_feats.{l}'] = feats[l][0].numpy().T[valid]
        tensors[f'cls_logits.{l}'] = got['cls'][l][0].numpy().T[valid]
        tensors[f'offsets.{l}'] = torch.relu(got['scale'][l])[0].numpy().T[valid]
        if kind == 'tridet':
            tensors[f'start_logits.{l}'] = got['start'][l][0].numpy().T
            tensors[f'end_logits.{l}'] = got['end'][l][0].numpy().T
    if kind == 'tridet':
        # predictions[1]: [B, num_classes, sum of padded level lengths, 2]
        reg = predictions[1][0]
        start = 0
        for l, m in enumerate(fmasks):
            valid = m[0].numpy().astype(bool)
            tensors[f'decoded_offsets.{l}'] = reg[:, start:start + level_lens[l]].numpy().transpose(1, 0, 2)[valid]
            start += level_lens[l]
    padded_len = int(got['proj_in'].shape[-1])
    return predictions, tensors, padded_len, level_lens, valid_lens


def detections_of(model, kind, predictions, meta, post_cfg, rounded):
    """OpenTAD's post_processing (SingleStageDetector's or TriDet's) on the
    predictions; without rounding its module's round() is shadowed."""
    mod = sys.modules['opentad.models.detectors.' + ('tridet' if kind == 'tridet' else 'single_stage')]
    if not rounded:
        mod.round = lambda v, ndigits=None: v
    try:
        with torch.no_grad():
            res = model.post_processing(predictions, [meta], post_cfg, ext_cls=list(range(NUM_CLASSES)))
    finally:
        if not rounded:
            del mod.round
    return [{'segment': [float(s) for s in d['segment']], 'label_id': int(d['label']), 'score': float(d['score'])}
            for d in res[meta['video_name']]]


def dump_detections_json(expected):
    """indent=1 JSON with one line per detection."""
    holder = {vid: dict(e, detections='@DETS:' + vid) for vid, e in expected.items()}
    text = json.dumps(holder, indent=1)
    for vid, e in expected.items():
        rows = ',\n  '.join(json.dumps(d, separators=(',', ':')) for d in e['detections'])
        text = text.replace(json.dumps('@DETS:' + vid), '[\n  ' + rows + '\n ]' if rows else '[]')
    return text + '\n'


# ----------------------------------------------------------------------------
# The OpenTAD checkpoint.


def make_checkpoint(model, cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    ema = OrderedDict(('module.' + k, v.detach().clone()) for k, v in model.state_dict().items())
    assert ema['module.rpn_head.loss_normalizer'].dtype == torch.int64
    live = OrderedDict()
    for k, v in ema.items():
        if k.endswith('loss_normalizer'):
            live[k] = torch.tensor(87.5, dtype=torch.float32)
        else:
            live[k] = v + 0.01 * torch.randn(v.shape, generator=gen)
    # A real AdamW after one step, parameter groups as OpenTAD builds them
    # (model.get_optim_groups with paramwise=True), on a copy of the model.
    trained = copy.deepcopy(model)
    groups = trained.get_optim_groups(dict(lr=cfg['optimizer']['lr'], weight_decay=cfg['optimizer']['weight_decay']))
    optimizer = torch.optim.AdamW(groups, lr=cfg['optimizer']['lr'], weight_decay=cfg['optimizer']['weight_decay'])
    for name, p in trained.named_parameters():
        if name.startswith(('rpn_head.cls_head.', 'rpn_head.reg_head.', 'rpn_head.scale.')):
            p.grad = 0.01 * torch.randn(p.shape, generator=gen)
    optimizer.step()
    iters, epoch = 40, 3
    sched = cfg['scheduler']
    scheduler = {'warmup_epochs': sched['warmup_epoch'] * iters, 'max_epochs': sched['max_epoch'] * iters,
                 'warmup_start_lr': 0.0, 'eta_min': float(sched.get('eta_min', 0.0)),
                 'base_lrs': [cfg['optimizer']['lr']] * 2, 'last_epoch': epoch * iters,
                 '_step_count': epoch * iters + 1, 'verbose': False, '_get_lr_called_within_step': False,
                 '_last_lr': [cfg['optimizer']['lr'] * epoch * iters / (sched['warmup_epoch'] * iters)] * 2}
    return {'epoch': epoch, 'state_dict': live, 'optimizer': optimizer.state_dict(), 'scheduler': scheduler,
            'state_dict_ema': ema}


# ----------------------------------------------------------------------------

MODELS_REG = use_opentad_checkout()
out = output_folder('opentad_small')
rng = np.random.default_rng(11)
VIDEOS = OrderedDict((vid, blob_features(rng, T, C_IN)) for vid, T in
                     (('vid00', 300), ('vid01', 768), ('vid02', 1000), ('vid03', 1001)))
with open(os.path.join(out, 'base_dataset.py'), 'w') as f:
    f.write(BASE_DATASET)

RUNS = (('actionformer', 21, ('vid00', 'vid01', 'vid02')),
        ('temporalmaxer', 22, ('vid00', 'vid01', 'vid03')),
        ('tridet', 23, ('vid00', 'vid01', 'vid02')))
KINDS = sys.argv[2].split(',') if len(sys.argv) > 2 else [k for k, _, _ in RUNS]
for kind, seed, vids in RUNS:
    if kind not in KINDS:
        continue
    sub = os.path.join(out, kind)
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, 'base_model.py'), 'w') as f:
        f.write(BASE_MODELS[kind])
    with open(os.path.join(sub, 'config.py'), 'w') as f:
        f.write(CHILDREN[kind])
    cfg = load_py_config(os.path.join(sub, 'config.py'))
    with open(os.path.join(sub, 'config.json'), 'w') as f:
        json.dump(plain(cfg), f, indent=1)
        f.write('\n')

    torch.manual_seed(seed)
    model = MODELS_REG.build(to_config(cfg['model']))
    model.eval()
    perturb_parameters(model)
    with torch.no_grad():
        # Confident classes (the prior's -4.6 moved up), so the ranking and the
        # NMS see scores well above the thresholds.
        model.rpn_head.cls_head.bias.add_(3.0)
        if kind != 'tridet':  # else most regressions are clipped to 0 by the ReLU
            model.rpn_head.reg_head.bias.add_(1.0)
    torch.save(make_checkpoint(model, cfg, seed), os.path.join(sub, 'weights.pth'))
    # The checkpoint's EMA weights, strictly loaded into a freshly built model,
    # must reproduce the outputs below (checked on the first video).
    fresh = MODELS_REG.build(to_config(cfg['model'])).eval()
    ckpt = torch.load(os.path.join(sub, 'weights.pth'))
    fresh.load_state_dict(OrderedDict((k[len('module.'):], v) for k, v in ckpt['state_dict_ema'].items()))
    check = capture_forward(fresh, kind, VIDEOS[vids[0]])[1]
    del fresh, ckpt

    post_cfg = to_config(cfg['post_processing'])
    post_cfg.sliding_window = False  # set by OpenTAD's eval_one_epoch for padding datasets
    expected = OrderedDict()
    for vid in vids:
        x = VIDEOS[vid]
        np.save(os.path.join(sub, vid + '.npy'), x)
        T = x.shape[0]
        predictions, tensors, padded_len, level_lens, valid_lens = capture_forward(model, kind, x)
        if vid == vids[0]:
            assert check.keys() == tensors.keys() and all(np.array_equal(check[k], tensors[k]) for k in check)
            assert all(np.abs(t).max() > 0 for t in tensors.values())
        write_safetensors(os.path.join(sub, vid + '.expected.safetensors'), tensors)
        meta = {'video_name': vid, 'fps': FPS, 'duration': (T * SNIPPET_STRIDE + 12) / FPS,
                'snippet_stride': SNIPPET_STRIDE, 'offset_frames': OFFSET_FRAMES}
        dets = detections_of(model, kind, predictions, meta, post_cfg, rounded=False)
        rounded = detections_of(model, kind, predictions, meta, post_cfg, rounded=True)
        assert [{'segment': d['segment'], 'label_id': d['label_id'], 'score': d['score']} for d in rounded] == \
            [{'segment': [round(s, 2) for s in d['segment']], 'label_id': d['label_id'],
              'score': round(d['score'], 4)} for d in dets]
        expected[vid] = {'input': vid + '.npy', 'num_feats': T, 'fps': FPS, 'duration': meta['duration'],
                         'snippet_stride': SNIPPET_STRIDE, 'offset_frames': OFFSET_FRAMES,
                         'padded_len': padded_len, 'level_lens': level_lens, 'valid_lens': valid_lens,
                         'detections': dets}
        print(kind, vid, 'T', T, 'padded', padded_len, 'levels', level_lens, 'valid', valid_lens,
              'dets', len(dets), 'top', dets[0] if dets else None)
    with open(os.path.join(sub, 'expected_detections.json'), 'w') as f:
        f.write(dump_detections_json(expected))

print('wrote', out)
