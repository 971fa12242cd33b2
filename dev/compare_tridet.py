#!/usr/bin/python3
"""flowless vs the public TriDet code on the CPU: same weights, same input,
same thread count (dev-only; /usr/bin/python3 with Debian's torch).

  TRIDET_ROOT=/path/to/TriDet /usr/bin/python3 dev/compare_tridet.py \\
      --build build/release --flowless build/release/tools/flowless [--threads 2] [--rounds 2]

1. model: flowless_dump_heads --init tridet-thumos writes a random TriDet at
   TriDet's THUMOS size (2048 -> 512, SGP window 1, k 5, MLP 768, 16 bins, 20
   classes); the reference's TriDet (its make_meta_arch, built from the same
   config with the reference's defaults) loads that file's tensors strictly;
2. parity: flowless_dump_heads runs Detector::detect on a random (T, 2048)
   video and writes the per-level outputs; the reference's outputs on the
   same video (reference_fixtures.run_and_capture) are compared, worst
   |a - b| / max(1, |b|) per output kind (fails above --tol);
3. timing, alternating for --rounds rounds: PyTorch's network forward
   (backbone, neck, the four heads; batch 1, no grad) and its full inference
   (the reference's forward: + decoding + Soft-NMS), medians of --repeats,
   against `flowless bench --preset tridet-thumos --T T --threads N --json`
   (network_seconds, inference_seconds; its own random weights, which do not
   change the speed); prints each round's times and ratios.
PyTorch runs with the tuned glibc malloc of dev/compare_pytorch.py (its
fastest setting).
"""
import argparse
import copy
import inspect
import json
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_pytorch import (ORIG_TUNABLES, TUNED_MALLOC, blas_library, median, read_safetensors,  # noqa: E402
                             run, time_it)
from reference_fixtures import run_and_capture, use_reference_checkout  # noqa: E402


def reference_model(cfg):
    """The reference TriDet for a flowless config: the reference's DEFAULTS
    overridden by the config's sections, model kwargs as load_config passes them."""
    import libs.core.config as refcfg
    from libs.modeling import make_meta_arch
    from libs.modeling import models as refmodels
    d = copy.deepcopy(refcfg.DEFAULTS)
    for sec in ('model', 'dataset', 'train_cfg', 'test_cfg'):
        d[sec].update({k: v for k, v in cfg.get(sec, {}).items() if v is not None or sec == 'test_cfg'})
    d['model'].update(input_dim=d['dataset']['input_dim'], num_classes=d['dataset']['num_classes'],
                      max_seq_len=d['dataset']['max_seq_len'], train_cfg=d['train_cfg'], test_cfg=d['test_cfg'])
    arch = refmodels.meta_arch['TriDet']  # the registry make_meta_arch reads
    params = set(inspect.signature(arch.__init__).parameters) - {'self'}
    return make_meta_arch('TriDet', **{k: v for k, v in d['model'].items() if k in params})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--build', default='build/release')
    ap.add_argument('--flowless', default='build/release/tools/flowless')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--T', type=int, default=2304)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--tol', type=float, default=1e-3)
    args = ap.parse_args()
    if ORIG_TUNABLES not in os.environ:
        env = dict(os.environ, GLIBC_TUNABLES=TUNED_MALLOC)
        env[ORIG_TUNABLES] = os.environ.get('GLIBC_TUNABLES', '')
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    print(f'PyTorch BLAS: {blas_library()}; threads {args.threads}; T {args.T}')
    use_reference_checkout('TRIDET_ROOT', 'TriDet')
    torch.set_num_threads(args.threads)
    dump = os.path.join(args.build, 'bench', 'flowless_dump_heads')
    tmp = tempfile.mkdtemp(prefix='flowless_tridet_')
    model_path = os.path.join(tmp, 'model.safetensors')
    run([dump, '--init', 'tridet-thumos', model_path])
    tensors, meta = read_safetensors(model_path)
    cfg = json.loads(meta['config'])
    model = reference_model(cfg)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f'TriDet THUMOS size: {n_params} parameters (reference) = flowless file tensors '
          f'{sum(v.size for v in tensors.values())}')

    cin, fps, stride, nframes = cfg['model']['input_dim'], 30.0, 4.0, 16.0
    feats = np.random.default_rng(7).random((args.T, cin), dtype=np.float32)
    np.save(os.path.join(tmp, 'feats.npy'), feats)
    video = {'video_id': 'v', 'feats': torch.from_numpy(np.ascontiguousarray(feats.T)), 'segments': None,
             'labels': None, 'fps': fps, 'duration': (args.T * stride + nframes) / fps, 'feat_stride': stride,
             'feat_num_frames': nframes}
    ref, _, _, _ = run_and_capture(model, video)
    run([dump, model_path, os.path.join(tmp, 'feats.npy'), os.path.join(tmp, 'out.safetensors'),
         '--threads', str(args.threads)])
    got, _ = read_safetensors(os.path.join(tmp, 'out.safetensors'))
    worst = {}
    for name, r in ref.items():
        kind = name.split('.')[0]
        g = got[name]
        assert g.shape == r.shape, (name, g.shape, r.shape)
        worst[kind] = max(worst.get(kind, 0.0), float(np.max(np.abs(g - r) / np.maximum(1.0, np.abs(r)))))
    print('parity, worst |flowless - reference| / max(1, |reference|):',
          ', '.join(f'{k} {v:.2e}' for k, v in sorted(worst.items())))
    if max(worst.values()) > args.tol:
        raise SystemExit(f'parity above --tol {args.tol}')

    x, masks = model.preprocessing([video])

    def network():
        with torch.no_grad():
            f, m = model.backbone(x, masks)
            f, m = model.neck(f, m)
            model.cls_head(f, m), model.start_head(f, m), model.end_head(f, m), model.reg_head(f, m)

    def inference():
        with torch.no_grad():
            model([video])

    rows = []
    for r in range(args.rounds):
        fl = json.loads(run([args.flowless, 'bench', '--preset', 'tridet-thumos', '--T', str(args.T), '--threads',
                             str(args.threads), '--repeats', str(args.repeats), '--json']))
        tn = median(time_it(network, 1, args.repeats))
        ti = median(time_it(inference, 1, args.repeats))
        rows.append((tn, ti, fl['network_seconds'], fl['inference_seconds']))
        print(f'round {r + 1}: PyTorch network {tn:.3f} s, inference {ti:.3f} s | flowless network '
              f'{fl["network_seconds"]:.3f} s ({tn / fl["network_seconds"]:.2f}x), inference '
              f'{fl["inference_seconds"]:.3f} s ({ti / fl["inference_seconds"]:.2f}x); flowless network '
              f'{fl["network_gflops"]:.1f} GFLOP/s of {fl["network_flops"] / 1e9:.1f} GFLOP, gemm '
              f'{fl["gemm_gflops"]:.1f} GFLOP/s')
    print(f'median speed-up over {args.rounds} rounds: network '
          f'{median([a / c for a, _, c, _ in rows]):.2f}x, inference {median([b / d for _, b, _, d in rows]):.2f}x')


if __name__ == '__main__':
    main()
