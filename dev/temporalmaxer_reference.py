#!/usr/bin/env python3
"""Dev-only golden data: a small TemporalMaxer, run by the public reference
code (github.com/TuanTNG/TemporalMaxer), written into
tests/data/temporalmaxer_small/.

TemporalMaxer is ActionFormer with the transformer replaced by max-pooling
(backbone_type convPooler, backbone_arch [#embedding convs, #poolings]), an
identity neck that is a parameter-free GroupNorm(4, C) over the whole padded
buffer, and SimOTA label assignment for training. This script imports the
reference's own modules (it contains none of their code) and needs a checkout
whose libs/ imports under /usr/bin/python3 (Debian's torch 1.13), with the
NMS extension (libs/utils/csrc/nms_cpu.cpp) built as module nms_1d_cpu on the
same PYTHONPATH:

  TEMPORALMAXER_ROOT=/path/to/TemporalMaxer \\
      /usr/bin/python3 dev/temporalmaxer_reference.py [OUT_DIR]

Writes (OUT_DIR, default tests/data/temporalmaxer_small): config.json (the
reference's load_config output: model_name, model, dataset, train_cfg,
test_cfg), weights.safetensors (state_dict, reference names), vidNN.npy
(T, 32) inputs, vidNN.expected.safetensors (per level l: cls_logits.l,
offsets.l, fpn_feats.l on the valid positions) and expected_detections.json
(per video: num_feats, fps, duration, padded_len, detections).

Training with SimOTA (write_training_batch), twice: with the config's
assigner (THUMOS: iou_weight 2, center_radius 1.5, keep_percent 1,
confuse_weight 0) into OUT_DIR, and with the assigner class's defaults
(keep_percent 0.65, confuse_weight 0.1: dynamic-k weights below 1) into
OUT_DIR/assigner_defaults/ (its config.json has `assigner: {}`; the weights
are OUT_DIR's). Each: train0.npy, train1.npy, train_gt.json,
train_losses.json, train_grads.safetensors (reference_fixtures.py) and
train_assignment.safetensors (the assigner's targets of video b:
cls_targets.b (N, C), reg_targets.b (N, 2), weights.b (N)).
"""
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

use_reference_checkout('TEMPORALMAXER_ROOT', 'TemporalMaxer')
from libs.core import load_config  # noqa: E402
from libs.modeling import make_meta_arch  # noqa: E402
from libs.modeling.simota_assigner import SimOTAAssigner  # noqa: E402

out = output_folder('temporalmaxer_small')
torch.manual_seed(5)
rng = np.random.default_rng(5)
C_IN, MAX_LEN, FPS, STRIDE, NFRAMES = 32, 768, 30.0, 4, 16

# configs/temporalmaxer_thumos_i3d.yaml at a small size (JSON is YAML).
user = {
    'model_name': 'TemporalMaxerArchitecture',
    'dataset': {'num_classes': 5, 'input_dim': C_IN, 'feat_stride': STRIDE, 'num_frames': NFRAMES,
                'trunc_thresh': 0.5, 'crop_ratio': [0.9, 1.0], 'max_seq_len': MAX_LEN},
    'model': {'backbone_type': 'convPooler', 'backbone_arch': [2, 5], 'fpn_type': 'identity',
              'max_buffer_len_factor': 6.0, 'embd_dim': 64, 'fpn_dim': 64, 'head_dim': 64,
              'assigner': {'iou_weight': 2, 'cls_weight': 1.0, 'center_radius': 1.5, 'keep_percent': 1.0,
                           'confuse_weight': 0.0}},
    'train_cfg': {'init_loss_norm': 100, 'clip_grad_l2norm': 1.0, 'cls_prior_prob': 0.01, 'center_sample': 'none'},
    'test_cfg': {'voting_thresh': 0.7, 'pre_nms_topk': 2000, 'max_seg_num': 200, 'min_score': 0.001,
                 'multiclass_nms': True},
}
with tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False) as f:
    json.dump(user, f)
cfg = load_config(f.name)
os.unlink(f.name)
model = make_meta_arch(cfg['model_name'], **cfg['model'])
model.eval()
perturb_parameters(model)
saved = saved_config(cfg)
with open(os.path.join(out, 'config.json'), 'w') as fh:
    json.dump(saved, fh, indent=1)
write_safetensors(os.path.join(out, 'weights.safetensors'), {k: v.numpy() for k, v in model.state_dict().items()})

expected = {}
for vid, T in (('vid00', 300), ('vid01', 768), ('vid02', 1000)):
    expected[vid] = write_fixture_video(model, out, vid, blob_features(rng, T, C_IN), FPS, STRIDE, NFRAMES)
with open(os.path.join(out, 'expected_detections.json'), 'w') as fh:
    json.dump(expected, fh, indent=1)


def write_training_batch(model, folder, videos):
    """A batch of two videos (features from rng, ground truth in grid units)
    through the reference's training forward (SimOTA on the current outputs,
    the weighted focal and DIoU losses, the normaliser's update) and the
    gradient of final_loss, from a fresh normaliser (init_loss_norm) and zero
    gradients; also the assigner's targets (get_target's output)."""
    os.makedirs(folder, exist_ok=True)
    model.train()
    model.zero_grad()
    model.loss_normalizer = cfg['train_cfg']['init_loss_norm']
    captured = []
    get_target = model.get_target

    def capture(*args, **kwargs):
        targets = get_target(*args, **kwargs)
        captured.append(targets)
        return targets
    model.get_target = capture
    batch, gts = training_batch(rng, videos, C_IN, FPS, STRIDE, NFRAMES, folder)
    write_training_outputs(model, batch, gts, folder)
    del model.get_target
    (targets,) = captured
    arrays = {}
    for b in range(len(videos)):
        arrays[f'cls_targets.{b}'] = targets['cls_targets'][b].numpy()
        arrays[f'reg_targets.{b}'] = targets['reg_targets'][b].numpy()
        arrays[f'weights.{b}'] = targets['weights'][b].numpy()
        w = targets['weights'][b]
        pos = targets['cls_targets'][b].sum(-1) > 0
        print(f'  video {b}: {int(pos.sum())} positive points, weights of positives',
              sorted(set(w[pos].tolist())))
    write_safetensors(os.path.join(folder, 'train_assignment.safetensors'), arrays)
    model.eval()


# Overlapping segments (a point inside two GTs: the regression target is the
# cheaper one, not the shorter), a segment labelled twice, one at step 0.
write_training_batch(model, out, (
    (768, [[10.5, 30.25], [20.0, 90.0], [60.0, 61.5], [100.0, 185.0], [100.0, 185.0], [300.0, 700.0],
           [350.0, 420.0]], [0, 2, 1, 2, 4, 3, 1]),
    (500, [[0.0, 9.0], [40.5, 120.0], [131.0, 149.5], [140.0, 160.0], [400.0, 498.0]], [1, 1, 3, 0, 0])))
# The assigner class's defaults: dynamic k = 65 % of the points inside a GT
# weigh 1, the other points inside a GT 0.1.
model.assigner = SimOTAAssigner()
defaults = os.path.join(out, 'assigner_defaults')
os.makedirs(defaults, exist_ok=True)
saved_defaults = json.loads(json.dumps(saved))
saved_defaults['model']['assigner'] = {}
with open(os.path.join(defaults, 'config.json'), 'w') as fh:
    json.dump(saved_defaults, fh, indent=1)
write_training_batch(model, defaults, (
    (768, [[5.0, 47.5], [30.0, 64.0], [200.0, 260.0], [200.0, 260.0], [400.0, 760.0]], [3, 0, 1, 2, 4]),
    (620, [[12.0, 18.5], [100.0, 330.0], [250.0, 290.0], [500.0, 612.0]], [2, 0, 0, 1])))
