#!/usr/bin/env python3
"""Dev-only golden data for ActionFormer's ActivityNet-style inference path,
written into tests/data/anet_style/ (run with /usr/bin/python3, Debian's
torch 1.13 + numpy):

- resampling to a fixed length (libs/datasets/anet.py with force_upsampling:
  F.interpolate(feats, size=max_seq_len, mode='linear', align_corners=False)
  on (1, C, T)), for a shorter, a longer and an equal-length input;
- the absolute position encoding (libs/modeling/models.py
  get_sinusoid_encoding(max_len, C) / C**0.5 as a float32 buffer, and its
  re-interpolation at inference for T >= max_len);
- external score fusion (libs/utils/postprocessing.py postprocess_results,
  ported to numpy below line by line) on the detections of the
  actionformer_small fixture with made-up classifier scores.

Not used by the library, its build or its tests; it produced the files the
tests read.

  /usr/bin/python3 dev/anet_reference.py [OUT_DIR]   # default tests/data/anet_style
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, '..', 'tests', 'data', 'anet_style')
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)


def resample(feats, L):
    """anet.py: (T, C) -> (L, C) when T != L."""
    x = torch.from_numpy(np.ascontiguousarray(feats.transpose()))  # C x T
    if x.shape[-1] != L:
        x = F.interpolate(x.unsqueeze(0), size=L, mode='linear', align_corners=False).squeeze(0)
    return x.numpy().transpose().copy()


# ---------------------------------------------------------------- resampling
L = 192
for T in (37, 300, 192, 1):
    f = rng.standard_normal((T, 5)).astype(np.float32)
    np.save(os.path.join(out, f'feats_T{T}.npy'), f)
    np.save(os.path.join(out, f'resampled_T{T}_L{L}.npy'), resample(f, L))


# ------------------------------------------------------ position encoding
def get_sinusoid_encoding(n_position, d_hid):
    def get_position_angle_vec(position):
        return [position / np.power(10000, 2 * (hid_j // 2) / d_hid) for hid_j in range(d_hid)]
    table = np.array([get_position_angle_vec(p) for p in range(n_position)])
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.FloatTensor(table).unsqueeze(0).transpose(1, 2)  # 1 x C x T


max_len, C = 64, 16
pos = get_sinusoid_encoding(max_len, C) / (C ** 0.5)
np.save(os.path.join(out, f'pos_embd_{max_len}x{C}.npy'), pos[0].numpy().transpose().copy())
for T in (64, 100):  # inference: re-interpolated when T >= max_len
    pe = F.interpolate(pos, T, mode='linear', align_corners=False)
    np.save(os.path.join(out, f'pos_embd_{max_len}x{C}_T{T}.npy'), pe[0].numpy().transpose().copy())


# ------------------------------------------------------------ score fusion
def postprocess_results(results, cls_scores, num_pred=200, topk=2):
    """postprocessing.py, with results already a dict vid -> arrays (results_to_array)."""
    processed = {'video-id': [], 't-start': [], 't-end': [], 'label': [], 'score': []}
    for vid, result in results.items():
        curr_cls_scores = np.asarray(cls_scores[vid])
        topk_cls_idx = np.argsort(curr_cls_scores)[::-1][:topk]
        topk_cls_score = curr_cls_scores[topk_cls_idx]
        pred_score, pred_segment = result['score'], result['segment']
        num_segs = min(num_pred, len(pred_score))
        new_pred_score = np.sqrt(topk_cls_score[:, None] @ pred_score[None, :]).flatten()
        new_pred_segment = np.tile(pred_segment, (topk, 1))
        new_pred_label = np.tile(topk_cls_idx[:, None], (1, num_segs)).flatten()
        processed['video-id'].extend([vid] * num_segs * topk)
        processed['t-start'].append(new_pred_segment[:, 0])
        processed['t-end'].append(new_pred_segment[:, 1])
        processed['label'].append(new_pred_label)
        processed['score'].append(new_pred_score)
    for k in ('t-start', 't-end', 'label', 'score'):
        processed[k] = np.concatenate(processed[k])
    return processed


def results_to_array(dets, num_pred):
    """postprocessing.py results_to_array for one video's detection list."""
    label = np.asarray([d['label_id'] for d in dets])
    score = np.asarray([d['score'] for d in dets])
    segment = np.asarray([d['segment'] for d in dets])
    inds = np.argsort(score)[::-1][:num_pred]
    return {'label': label[inds], 'score': score[inds], 'segment': segment[inds]}


fixture = json.load(open(os.path.join(here, '..', 'tests', 'data', 'actionformer_small', 'expected_detections.json')))
num_cls = 7
cls_scores = {}
for vid in sorted(fixture):
    s = rng.random(num_cls)
    cls_scores[vid] = (s / s.sum()).tolist()  # a softmax-like classifier output
cls_scores['vid_unused'] = [1.0 / num_cls] * num_cls  # a video the predictions do not have
with open(os.path.join(out, 'ext_scores.json'), 'w') as fh:
    json.dump({'version': 'made up for the test', 'results': cls_scores}, fh, indent=1)

for num_pred, topk in ((200, 2), (5, 3)):
    results = {vid: results_to_array(fixture[vid]['detections'], num_pred) for vid in sorted(fixture)}
    p = postprocess_results(results, cls_scores, num_pred=num_pred, topk=topk)
    fused = {}
    for i, vid in enumerate(p['video-id']):
        fused.setdefault(vid, []).append({'segment': [float(p['t-start'][i]), float(p['t-end'][i])],
                                          'label_id': int(p['label'][i]), 'score': float(p['score'][i])})
    with open(os.path.join(out, f'fused_top{num_pred}_k{topk}.json'), 'w') as fh:
        json.dump(fused, fh, indent=1)
print('wrote', os.path.abspath(out))
