"""Dev-only helpers of the scripts that write reference fixtures by running
the public ActionFormer / TemporalMaxer / TriDet code
(dev/anet_network_reference.py, dev/temporalmaxer_reference.py,
dev/tridet_reference.py). Run with /usr/bin/python3 (Debian's torch).
"""
import json
import os
import struct
import sys

import numpy as np
import torch


def use_reference_checkout(env_var, what):
    """Puts the checkout named by environment variable env_var first on
    sys.path and imports its NMS extension (module nms_1d_cpu), so a missing
    build fails here, not in the middle of a run."""
    root = os.environ.get(env_var)
    if not root:
        sys.exit(f'set {env_var} to a checkout of {what}')
    sys.path.insert(0, root)
    import nms_1d_cpu  # noqa: F401


def output_folder(fixture):
    """argv[1], or tests/data/<fixture> next to this script; created."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, '..', 'tests', 'data', fixture)
    os.makedirs(out, exist_ok=True)
    return out


def write_safetensors(path, tensors):
    """name -> array, written as float32 safetensors (names sorted)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        b = a.tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def perturb_parameters(model):
    """Moves every parameter away from its initial value, as the THUMOS
    fixture's author did, so each part of the network affects the output:
    biases, the norms' weights and biases ((1, C, 1) in the reference) and
    scales get + 0.1 N(0, 1), weights x (1 + 0.05 N(0, 1)). The classifier's
    prior bias (-4.6) stays near its value, so scores stay spread."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() <= 1 or p.numel() == p.shape[1] or name.endswith('bias'):
                p.add_(0.1 * torch.randn_like(p))
            else:
                p.mul_(1.0 + 0.05 * torch.randn_like(p))


def run_and_capture(model, video):
    """Runs the reference model (eval mode) on one video dict and returns
    (per-level tensors on the valid positions, detections as JSON, padded length,
    valid length per level): cls_logits.l (T_l, classes), offsets.l (T_l, 2;
    TriDet: 2 x (num_bins + 1)), fpn_feats.l (T_l, C), and for TriDet's
    Trident head start_logits.l / end_logits.l (T_l, classes)."""
    captured = {}
    orig = model.inference

    def capture(video_list, points, fpn_masks, out_cls_logits, out_offsets, *boundary):
        # TriDet's inference also takes the Trident head's start / end logits,
        # (B, classes, T_l) each.
        captured.update(masks=fpn_masks, cls=out_cls_logits, off=out_offsets, boundary=boundary)
        return orig(video_list, points, fpn_masks, out_cls_logits, out_offsets, *boundary)

    hook = model.neck.register_forward_hook(lambda mod, inp, o: captured.__setitem__('fpn', o[0]))
    model.inference = capture
    try:
        with torch.no_grad():
            res = model([video])[0]
    finally:
        model.inference = orig
        hook.remove()
    tensors = {}
    for l, mask in enumerate(captured['masks']):
        valid = mask[0].numpy().astype(bool)
        tensors[f'cls_logits.{l}'] = captured['cls'][l][0].numpy()[valid]
        tensors[f'offsets.{l}'] = captured['off'][l][0].numpy()[valid]
        tensors[f'fpn_feats.{l}'] = captured['fpn'][l][0].numpy().T[valid]
        for name, b in zip(('start_logits', 'end_logits'), captured['boundary']):
            if b is not None:
                tensors[f'{name}.{l}'] = b[l][0].numpy().T[valid]
    dets = [{'segment': [float(s[0]), float(s[1])], 'label_id': int(lab), 'score': float(sc)}
            for s, sc, lab in zip(res['segments'].numpy(), res['scores'].numpy(), res['labels'].numpy())]
    return tensors, dets, int(captured['masks'][0].shape[-1]), [int(m.sum()) for m in captured['masks']]


def plain(v):
    """A config tree as JSON holds it: dicts, lists (tuples become lists), scalars."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def saved_config(cfg):
    """The reference's load_config output as written to config.json:
    model_name, model (without its train_cfg / test_cfg copies), dataset,
    train_cfg, test_cfg, tuples as lists."""
    return {'model_name': cfg['model_name'],
            'model': {k: plain(v) for k, v in cfg['model'].items() if k not in ('train_cfg', 'test_cfg')},
            'dataset': plain(cfg['dataset']), 'train_cfg': plain(cfg['train_cfg']),
            'test_cfg': plain(cfg['test_cfg'])}


def blob_features(rng, T, C):
    """(T, C) float32 input: 0.3 N(0, 1) noise plus six Gaussian bumps in time,
    each with a random direction in channel space (numpy Generator rng)."""
    t = np.arange(T)[:, None]
    x = 0.3 * rng.standard_normal((T, C))
    for _ in range(6):
        c, w = rng.uniform(0, T), rng.uniform(T / 30, T / 6)
        x += rng.standard_normal(C)[None, :] * np.exp(-0.5 * ((t - c) / w) ** 2)
    return x.astype(np.float32)


def training_batch(rng, videos, c_in, fps, stride, nframes, out):
    """The reference's video dicts for a training batch: per (T, segments,
    labels) of `videos` (ground truth in grid units) blob_features(rng, T,
    c_in), saved as out/train<b>.npy; returns (batch, gts) for
    write_training_outputs."""
    batch, gts = [], []
    for b, (T, segs, labs) in enumerate(videos):
        x = blob_features(rng, T, c_in)
        np.save(os.path.join(out, f'train{b}.npy'), x)
        batch.append({'video_id': f'train{b}', 'feats': torch.from_numpy(np.ascontiguousarray(x.T)),
                      'segments': torch.tensor(segs, dtype=torch.float32),
                      'labels': torch.tensor(labs, dtype=torch.int64), 'fps': fps,
                      'duration': (T * stride + nframes) / fps, 'feat_stride': stride, 'feat_num_frames': nframes})
        gts.append({'segments': segs, 'labels': labs, 'num_feats': T})
    return batch, gts


def write_training_outputs(model, batch, gts, out):
    """The reference's training forward on `batch` (video dicts with
    segments / labels), the backward of final_loss, and the fixture files:
    train_gt.json (gts), train_losses.json (losses, the normaliser before and
    after), train_grads.safetensors (every parameter's gradient)."""
    norm_before = float(model.loss_normalizer)
    losses = model(batch)
    losses['final_loss'].backward()
    with open(os.path.join(out, 'train_gt.json'), 'w') as f:
        json.dump(gts, f, indent=1)
    with open(os.path.join(out, 'train_losses.json'), 'w') as f:
        json.dump({'init_loss_norm': norm_before, 'loss_norm_after': float(model.loss_normalizer),
                   'cls_loss': float(losses['cls_loss']), 'reg_loss': float(losses['reg_loss']),
                   'final_loss': float(losses['final_loss'])}, f, indent=1)
    write_safetensors(os.path.join(out, 'train_grads.safetensors'),
                      {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None})
    print('train losses', {k: float(v) for k, v in losses.items()}, 'norm', norm_before, '->',
          float(model.loss_normalizer))


def write_fixture_video(model, out, vid, x, fps, stride, nframes):
    """One inference video of a fixture: vid.npy (the (T, C) input x) and
    vid.expected.safetensors (run_and_capture's per-level outputs); returns
    its expected_detections.json entry (num_feats, fps, duration, padded_len,
    detections) after printing a summary line."""
    T = x.shape[0]
    np.save(os.path.join(out, vid + '.npy'), x)
    duration = (T * stride + nframes) / fps
    tensors, dets, padded_len, level_lens = run_and_capture(
        model, {'video_id': vid, 'feats': torch.from_numpy(np.ascontiguousarray(x.T)), 'segments': None,
                'labels': None, 'fps': fps, 'duration': duration, 'feat_stride': stride,
                'feat_num_frames': nframes})
    write_safetensors(os.path.join(out, vid + '.expected.safetensors'), tensors)
    print(vid, 'T', T, 'padded', padded_len, 'levels', level_lens, 'dets', len(dets),
          'top', dets[0] if dets else None)
    return {'num_feats': T, 'fps': fps, 'duration': duration, 'padded_len': padded_len, 'detections': dets}
