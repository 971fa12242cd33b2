#!/usr/bin/env python3
"""Dev-only golden data: two small TriDet models, run by the public reference
code (github.com/dingfengshi/TriDet), written into tests/data/tridet_small/.

TriDet is ActionFormer with the transformer blocks replaced by SGP blocks
(backbone_type SGP: depthwise convolutions gated by a per-video channel
summary, a GroupNorm MLP, nothing masked inside a block) and the regression
head replaced by the Trident head: per class, start and end boundary logits of
the num_bins + 1 neighbouring steps are added to the centre offset logits,
soft-maxed and turned into an expected distance. This script imports the
reference's own modules (it contains none of their code) and needs a checkout
whose libs/ imports under /usr/bin/python3 (Debian's torch 1.13), with the
1-D NMS extension built as module nms_1d_cpu on the same PYTHONPATH:

  TRIDET_ROOT=/path/to/TriDet /usr/bin/python3 dev/tridet_reference.py [OUT_DIR]

Two configs at a small size, with every parameter perturbed
(reference_fixtures.perturb_parameters; init_conv_vars 0.2 so the SGP
branches start non-zero):
  config.json      configs/thumos_i3d.yaml: SGP window 1, k 5, 16 bins,
                   multi-class Soft-NMS; videos vid00 (300 steps, padded to
                   max_seq_len 768), vid01 (768), vid02 (1000, padded to 1024)
  config_anet.json configs/anet_tsp.yaml: SGP window 15, k 1.3, 12 bins,
                   absolute position encoding, one class, class-agnostic
                   Soft-NMS with voting 0.95; vid03 (150 steps, padded to 768)
                   and vid04 (900, padded to 960: the encoding re-interpolated;
                   max_buffer_len_factor 2 instead of 1 so the points reach it)
Writes per config the reference's load_config output (model_name, model,
dataset, train_cfg, test_cfg), weights[_anet].safetensors (state_dict,
reference names), vidNN.npy (T, 32) inputs, vidNN.expected.safetensors (per
level l on the valid positions: cls_logits.l, offsets.l (T_l, 2 x (bins + 1)),
start_logits.l, end_logits.l, fpn_feats.l) and expected_detections.json (per
video: config, num_feats, fps, duration, padded_len, detections); and with
config.json a training batch (train0.npy, train1.npy, train_gt.json,
train_losses.json, train_grads.safetensors: write_training_batch).
"""
import copy
import json
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_fixtures import (blob_features, output_folder, perturb_parameters,  # noqa: E402
                                saved_config, training_batch, use_reference_checkout,
                                write_fixture_video, write_safetensors, write_training_outputs)

use_reference_checkout('TRIDET_ROOT', 'TriDet')
from libs.core import load_config  # noqa: E402
import libs.core.config as refcfg  # noqa: E402
from libs.modeling import make_meta_arch  # noqa: E402

out = output_folder('tridet_small')
torch.manual_seed(7)
rng = np.random.default_rng(7)
C_IN, FPS, STRIDE, NFRAMES = 32, 30.0, 4, 16

# configs/thumos_i3d.yaml and configs/anet_tsp.yaml at a small size (JSON is YAML).
CONFIGS = {
    'config.json': ('weights.safetensors', {
        'dataset': {'num_classes': 5, 'input_dim': C_IN, 'feat_stride': STRIDE, 'num_frames': NFRAMES,
                    'trunc_thresh': 0.5, 'crop_ratio': [0.9, 1.0], 'max_seq_len': 768},
        'model': {'fpn_type': 'identity', 'max_buffer_len_factor': 6.0, 'backbone_arch': [2, 2, 5],
                  'n_sgp_win_size': 1, 'num_bins': 16, 'k': 5, 'iou_weight_power': 0.2,
                  'use_trident_head': True, 'sgp_mlp_dim': 96, 'input_noise': 0.0005,
                  'embd_dim': 64, 'fpn_dim': 64, 'head_dim': 64, 'init_conv_vars': 0.2},
        'train_cfg': {'init_loss_norm': 100, 'clip_grad_l2norm': 1.0, 'cls_prior_prob': 0.01,
                      'center_sample': 'radius', 'center_sample_radius': 1.5},
        'test_cfg': {'voting_thresh': 0.7, 'pre_nms_topk': 2000, 'max_seg_num': 2000, 'min_score': 0.001,
                     'multiclass_nms': True},
    }, (('vid00', 300), ('vid01', 768), ('vid02', 1000))),
    'config_anet.json': ('weights_anet.safetensors', {
        'dataset': {'num_classes': 1, 'input_dim': C_IN, 'feat_stride': STRIDE, 'num_frames': NFRAMES,
                    'trunc_thresh': 0.5, 'crop_ratio': [0.9, 1.0], 'max_seq_len': 768},
        'model': {'fpn_type': 'identity', 'max_buffer_len_factor': 2.0, 'backbone_arch': [2, 2, 5],
                  'n_sgp_win_size': 15, 'embd_dim': 64, 'sgp_mlp_dim': 128, 'fpn_dim': 64, 'head_dim': 96,
                  'use_abs_pe': True, 'num_bins': 12, 'iou_weight_power': 1, 'input_noise': 0.5, 'k': 1.3,
                  'init_conv_vars': 0.2},
        'train_cfg': {'init_loss_norm': 400, 'clip_grad_l2norm': 0.4, 'cls_prior_prob': 0.01,
                      'center_sample': 'radius', 'center_sample_radius': 1.5, 'label_smoothing': 0.1},
        'test_cfg': {'voting_thresh': 0.95, 'pre_nms_topk': 2000, 'max_seg_num': 200, 'min_score': 0.001,
                     'multiclass_nms': False, 'nms_sigma': 0.70, 'duration_thresh': 0.1},
    }, (('vid03', 150), ('vid04', 900))),
}


def write_training_batch(model):
    """A batch of two videos (768 = max_seq_len and 500 steps) with ground
    truth in grid units (one segment labelled with two classes, so a point
    has two positive classes and the Trident head is decoded per class)
    through the reference's training forward: label assignment, focal loss
    weighted by (1 - (1 - IoU))^iou_weight_power at the positive classes,
    DIoU on the per-class decoded distances, the normaliser's update, and the
    gradient of final_loss for every parameter. Stochastic depth is switched
    off (its modules in eval mode; their affine scale still applies) and so
    is the input noise (input_noise 0 for this forward)."""
    model.train()
    for mod in model.modules():
        if 'Drop' in type(mod).__name__:
            mod.eval()
    noise = model.input_noise
    model.input_noise = 0.0
    model.zero_grad()
    batch, gts = training_batch(rng, ((768, [[10.5, 30.25], [60.0, 61.5], [100.0, 185.0], [100.0, 185.0],
                                           [300.0, 700.0]], [0, 1, 2, 4, 3]),
                                      (500, [[2.0, 9.0], [40.5, 120.0], [131.0, 149.5], [400.0, 498.0]],
                                       [1, 1, 3, 0])), C_IN, FPS, STRIDE, NFRAMES, out)
    write_training_outputs(model, batch, gts, out)
    model.input_noise = noise
    model.eval()


expected = {}
for cfg_name, (weights_name, user, videos) in CONFIGS.items():
    with tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False) as f:
        json.dump(user, f)
    # load_config merges into its DEFAULTS dict in place: a deep copy per config.
    cfg = load_config(f.name, defaults=copy.deepcopy(refcfg.DEFAULTS))
    os.unlink(f.name)
    model = make_meta_arch(cfg['model_name'], **cfg['model'])
    model.eval()
    perturb_parameters(model)
    saved = saved_config(cfg)
    with open(os.path.join(out, cfg_name), 'w') as fh:
        json.dump(saved, fh, indent=1)
    write_safetensors(os.path.join(out, weights_name), {k: v.numpy() for k, v in model.state_dict().items()})
    for vid, T in videos:
        entry = write_fixture_video(model, out, vid, blob_features(rng, T, C_IN), FPS, STRIDE, NFRAMES)
        expected[vid] = {'config': cfg_name, **entry}
    if cfg_name == 'config.json':
        write_training_batch(model)
with open(os.path.join(out, 'expected_detections.json'), 'w') as fh:
    json.dump(expected, fh, indent=1)
