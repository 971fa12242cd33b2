#!/usr/bin/env python3
"""Dev-only golden data: a small ActivityNet-style ActionFormer, run by the
public reference code, written into tests/data/actionformer_anet_small/.

The THUMOS-style fixture (tests/data/actionformer_small, from shared/fixtures)
has no absolute position encoding, no global-attention level, many classes
and multiclass Soft-NMS. ActionFormer's ActivityNet configs (configs/anet_*.yaml)
use all the other branches: use_abs_pe, n_mha_win_size [w, w, w, w, w, -1],
one class (class-agnostic), multiclass_nms False with segment voting, inputs
resampled to max_seq_len (force_upsampling) and, for over-length inputs
without resampling, the position encoding re-interpolated at inference.

This script imports the reference's own modules; it contains none of their
code. It needs:
  - a checkout of the ActionFormer release (github.com/happyharrycn/actionformer_release)
    whose libs/ imports under /usr/bin/python3 (Debian's torch 1.13), and
  - its NMS extension (libs/utils/csrc/nms_cpu.cpp) built as module nms_1d_cpu
    on the same PYTHONPATH.

  ACTIONFORMER_ROOT=/path/to/actionformer_release \\
      /usr/bin/python3 dev/anet_network_reference.py [OUT_DIR]

What it writes (OUT_DIR, default tests/data/actionformer_anet_small):
  config.json            the reference config sections (model, dataset,
                         train_cfg, test_cfg) for the resampling config
  config_var.json        the same model without force_upsampling (TSP-style:
                         variable length, padded, the PE re-interpolated)
  weights.safetensors    state_dict() of the model, reference names
  vidNN.npy              inputs (T, 32) float32, as stored on disk
  vidNN.expected.safetensors  per level l: cls_logits.l (T_l, 1),
                         offsets.l (T_l, 2), fpn_feats.l (T_l, 64) on the
                         valid positions
  expected_detections.json  per video: config, num_feats, fps, duration,
                         feat_stride and feat_num_frames handed to the model
                         (anet.py's grid), and the reference's detections
  train0.npy, train1.npy, train_gt.json, train_losses.json,
  train_grads.safetensors  a training batch (grid-unit ground truth), the
                         reference's losses and loss normaliser, and the
                         gradient of final_loss for every parameter
"""
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_fixtures import (output_folder, perturb_parameters, run_and_capture,  # noqa: E402
                                use_reference_checkout, write_safetensors, write_training_outputs)

use_reference_checkout('ACTIONFORMER_ROOT', 'the ActionFormer release')
from libs.modeling import make_meta_arch  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
out = output_folder('actionformer_anet_small')
torch.manual_seed(11)
rng = np.random.default_rng(11)

# ---------------------------------------------------------------- config
# The THUMOS fixture's config layout, with configs/anet_i3d.yaml's choices
# at a small size: windows [7]*5 + [-1], max_seq_len 192, one class.
base = json.load(open(os.path.join(here, '..', 'tests', 'data', 'actionformer_small', 'config.json')))
cfg = copy.deepcopy(base)
C_IN, MAX_LEN = 32, 192
# max_buffer_len_factor is 1.0 in anet_i3d.yaml; the reference's point
# generator then refuses inputs padded beyond max_seq_len, so vid03 (padded
# to 384) needs 2.0. The factor sizes a buffer only; no output depends on it.
cfg['model'].update({'n_mha_win_size': [7, 7, 7, 7, 7, -1], 'max_buffer_len_factor': 2.0, 'use_abs_pe': True,
                     'input_dim': C_IN, 'num_classes': 1, 'max_seq_len': MAX_LEN})
cfg['dataset'].update({'input_dim': C_IN, 'num_classes': 1, 'max_seq_len': MAX_LEN, 'feat_stride': 16,
                       'num_frames': 16, 'default_fps': 25, 'crop_ratio': [0.9, 1.0], 'force_upsampling': True})
cfg['test_cfg'].update({'voting_thresh': 0.9, 'max_seg_num': 100, 'min_score': 0.001, 'multiclass_nms': False,
                        'nms_sigma': 0.75, 'duration_thresh': 0.001, 'ext_score_file': None})
cfg['train_cfg'].update({'init_loss_norm': 200, 'loss_weight': 2.0, 'label_smoothing': 0.1})
cfg_var = copy.deepcopy(cfg)
cfg_var['dataset']['force_upsampling'] = False

m = dict(cfg['model'])
model = make_meta_arch('LocPointTransformer', train_cfg=cfg['train_cfg'], test_cfg=cfg['test_cfg'], **m)
model.eval()

perturb_parameters(model)
write_safetensors(os.path.join(out, 'weights.safetensors'),
                  {k: v.numpy() for k, v in model.state_dict().items()})
with open(os.path.join(out, 'config.json'), 'w') as f:
    json.dump(cfg, f, indent=1)
with open(os.path.join(out, 'config_var.json'), 'w') as f:
    json.dump(cfg_var, f, indent=1)


# ---------------------------------------------------------------- grid (anet.py)
def anet_grid(T, dcfg, duration, fps):
    """anet.py __getitem__'s three cases: (feat_stride, num_frames) handed to the model."""
    fs, nf = dcfg['feat_stride'], dcfg['num_frames']
    if fs > 0 and not dcfg['force_upsampling']:
        return float(fs), float(nf)
    if fs > 0 and dcfg['force_upsampling']:
        s = float((T - 1) * fs + nf) / dcfg['max_seq_len']
        return s, s
    s = duration * fps / (dcfg['max_seq_len'] if dcfg['force_upsampling'] else T)
    return s, s


def smooth_features(T):
    """Features with temporal structure: a few smooth bumps plus noise."""
    t = np.arange(T)[:, None]
    x = 0.3 * rng.standard_normal((T, C_IN))
    for _ in range(4):
        c, w = rng.uniform(0, T), rng.uniform(T / 20, T / 5)
        x += rng.standard_normal(C_IN)[None, :] * np.exp(-0.5 * ((t - c) / w) ** 2)
    return x.astype(np.float32)


# ---------------------------------------------------------------- run
videos = [  # id, T, config, fps
    ('vid00', 100, 'config.json', 25.0),      # upsampled to 192
    ('vid01', 192, 'config.json', 25.0),      # already 192: not resampled
    ('vid02', 300, 'config.json', 30.0),      # downsampled to 192 (feat_stride > 0 allows it); its own fps
    ('vid03', 300, 'config_var.json', 25.0),  # no resampling: padded to 384, PE re-interpolated
    ('vid04', 150, 'config_var.json', 25.0),  # no resampling: padded to 192
]
expected = {}
for vid, T, cname, fps in videos:
    dcfg = (cfg if cname == 'config.json' else cfg_var)['dataset']
    x = smooth_features(T)
    np.save(os.path.join(out, vid + '.npy'), x)
    duration = round(((T - 1) * 16 + 16) / fps * 0.97, 3)  # a little shorter than the features' span
    feat_stride, num_frames = anet_grid(T, dcfg, duration, fps)
    feats = torch.from_numpy(np.ascontiguousarray(x.transpose()))  # C x T
    if feats.shape[-1] != dcfg['max_seq_len'] and dcfg['force_upsampling']:
        feats = F.interpolate(feats.unsqueeze(0), size=dcfg['max_seq_len'], mode='linear',
                              align_corners=False).squeeze(0)
    tensors, dets, padded_len, level_lens = run_and_capture(
        model, {'video_id': vid, 'feats': feats, 'segments': None, 'labels': None, 'fps': fps,
                'duration': duration, 'feat_stride': feat_stride, 'feat_num_frames': num_frames})
    write_safetensors(os.path.join(out, vid + '.expected.safetensors'), tensors)
    expected[vid] = {'config': cname, 'num_feats': T, 'fps': fps, 'duration': duration,
                     'feat_stride': feat_stride, 'feat_num_frames': num_frames,
                     'padded_len': padded_len, 'detections': dets}
    print(vid, 'T', T, '->', int(feats.shape[-1]), 'padded', expected[vid]['padded_len'],
          'levels', level_lens, 'dets', len(dets),
          'top', dets[0] if dets else None)
with open(os.path.join(out, 'expected_detections.json'), 'w') as f:
    json.dump(expected, f, indent=1)


# ---------------------------------------------------------------- training
# A batch of two videos (192 = max_seq_len and 150 steps) with ground truth
# in grid units, through the reference's training forward: label assignment,
# focal loss with label smoothing 0.1, DIoU loss weighted 2.0, the loss
# normaliser's update, and the gradient of final_loss for every parameter.
# Stochastic depth is switched off (its modules in eval mode; their affine
# scale still applies), as in the THUMOS fixture.
model.train()
for mod in model.modules():
    if 'Drop' in type(mod).__name__:
        mod.eval()
model.zero_grad()
batch, gts = [], []
for b, (T, segs) in enumerate(((192, [[10.5, 30.25], [60.0, 61.5], [100.0, 185.0], [10.5, 30.25]]),
                               (150, [[2.0, 9.0], [40.5, 120.0], [131.0, 149.5]]))):
    x = smooth_features(T)
    np.save(os.path.join(out, f'train{b}.npy'), x)
    seg = torch.tensor(segs, dtype=torch.float32)
    lab = torch.zeros(len(segs), dtype=torch.int64)
    batch.append({'video_id': f'train{b}', 'feats': torch.from_numpy(np.ascontiguousarray(x.T)), 'segments': seg,
                  'labels': lab, 'fps': 25.0, 'duration': T * 16 / 25.0, 'feat_stride': 16.0,
                  'feat_num_frames': 16.0})
    gts.append({'segments': segs, 'labels': [0] * len(segs), 'num_feats': T})
write_training_outputs(model, batch, gts, out)
