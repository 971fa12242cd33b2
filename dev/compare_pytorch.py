#!/usr/bin/python3
"""flowless vs PyTorch on the CPU: same weights, same input, same thread count.

A PyTorch (1.13, CPU) re-implementation of the ActionFormer network as the
reference release computes it (actionformer.md A.3/A.4): masked convs,
channel LayerNorm on (B, C, T), pre-LN transformer blocks whose
LocalMaskedMHCA uses the Longformer-style sliding-chunk attention (chunks of
2w with hop w, einsum per chunk, band of 2w+1 scores, -inf outside the
sequence, -1e4 on the padded tail, chunked probability x value product),
identity neck, shared cls/reg heads. It is written for this comparison (a
development tool, not part of the library) and loads a flowless model file
(safetensors read with plain Python: 8-byte header length + JSON header + raw
little-endian float32).

What it does:
 1. model: --model FILE, or a random-initialised one written by
    flowless_dump_heads --init PRESET (weights do not change the speed);
 2. input: a deterministic random (T, input_dim) .npy;
 3. parity: flowless_dump_heads writes the per-level outputs of
    Detector::detect (cls_logits, offsets, fpn_feats on the valid positions);
    the PyTorch model runs the same padded buffer and the script reports the
    worst |a - b| / max(1, |b|) per output kind (fails above --tol);
 4. timing, with torch.set_num_threads(N) and the flowless benchmark run with
    --threads N, alternating the two for --rounds rounds:
      - network forward, batch 1, no grad (median of --repeats)
      - training step, batch 2 at T = max_seq_len, train mode (stochastic
        depth on): forward + loss (center-sampling label assignment, sigmoid
        focal loss, DIoU, as the reference) + backward, and separately the
        gradient clipping + AdamW step;
    and prints flowless / PyTorch ratios per round and their median.
The flowless numbers come from `flowless bench --json` (--flowless CLI) or,
without it, from the flowless_model_bench executable of a build folder.

PyTorch's allocator (--torch-malloc). PyTorch's CPU tensors come from glibc's
malloc. With glibc's defaults every block above the (dynamic) mmap threshold
is a fresh mmap, page-faulted on first touch and unmapped when freed, so an
inference-only process re-faults most activations on every forward (0.79 s
at T = 2304 on the Zen 5 machine); a training step frees blocks large enough
to raise the dynamic threshold, and forwards after it run in 0.43 s. The
speed of a default PyTorch process therefore depends on what it ran before.
  tuned   (the default) runs PyTorch with GLIBC_TUNABLES=TUNED_MALLOC
          (mmap threshold 32 MiB, trim threshold 16 GiB: freed blocks stay
          mapped, as flowless's own block cache keeps them); the script
          re-executes itself with that setting. This is PyTorch at its best
          and the baseline the ratios should be read against.
  default glibc as shipped (the setting the issue's baseline was measured
          with). Use it with --no-train for an inference-only process.
The flowless benchmark processes always run with the caller's environment.

Usage (2 threads, THUMOS size; ~3-5 minutes on an idle 2-core machine):
  /usr/bin/python3 dev/compare_pytorch.py --build /tmp/build_perf --threads 2
"""
import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- safetensors
def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor {name} has dtype {info['dtype']}, expected F32")
        s, e = info["data_offsets"]
        arr = np.frombuffer(data, dtype="<f4", count=(e - s) // 4, offset=base + s)
        tensors[name] = arr.reshape(info["shape"]).copy()
    return tensors, meta


# ----------------------------------------------------------------------------- network
class ChannelLayerNorm(nn.Module):
    """LayerNorm over C of (B, C, T), biased variance, per-channel affine (1, C, 1)."""

    def __init__(self, c, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, c, 1))
        self.bias = nn.Parameter(torch.zeros(1, c, 1))

    def forward(self, x):
        r = x - x.mean(dim=1, keepdim=True)
        var = (r * r).mean(dim=1, keepdim=True)
        return r / torch.sqrt(var + self.eps) * self.weight + self.bias


class MaskedConv(nn.Module):
    """Conv1d (padding k//2) whose output is multiplied by the (nearest-downsampled) mask."""

    def __init__(self, cin, cout, k, stride=1, groups=1, bias=True):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(cin, cout, k, stride, k // 2, groups=groups, bias=bias)

    def forward(self, x, mask):  # mask: (B, 1, T) float
        if self.stride > 1:
            mask = mask[:, :, :: self.stride]
        return self.conv(x) * mask, mask


def drop_path(x, p, training):
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    m = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x / keep * m


class AffineDropPath(nn.Module):
    def __init__(self, c, p):
        super().__init__()
        self.p = p
        self.scale = nn.Parameter(1e-4 * torch.ones(1, c, 1))

    def forward(self, x):
        return drop_path(self.scale * x, self.p, self.training)


def chunk_view(x, w):
    """(BH, T, d) -> overlapping chunks (BH, T/w - 1, 2w, d), hop w (a strided view)."""
    bh, t, d = x.shape
    x = x.contiguous()
    return x.as_strided((bh, t // w - 1, 2 * w, d), (t * d, w * d, d, 1))


_band_cache = {}


def band_index(t, w, device):
    """Flat index into the chunk scores (n, 2w, 2w) for band slot (i, o), key j = i + o - w;
    index n*4w^2 (a -inf sentinel) where j is outside [0, t)."""
    key = (t, w)
    if key not in _band_cache:
        n = t // w - 1
        i = torch.arange(t).view(t, 1)
        o = torch.arange(2 * w + 1).view(1, -1)
        off = o - w
        j = i + off
        c_up = torch.clamp(i // w, max=n - 1)          # offsets >= 0: chunk holding row i in its first half
        c_lo = i // w - 1                              # offsets < 0: previous chunk, row in its second half
        c = torch.where(off >= 0, c_up, c_lo)
        x = i - c * w
        y = x + off
        ok = (j >= 0) & (j < t) & (c >= 0) & (y >= 0) & (y < 2 * w)
        flat = ((c * 2 * w + x) * 2 * w + y)
        flat = torch.where(ok, flat, torch.full_like(flat, n * 4 * w * w))
        _band_cache[key] = flat.to(device)
    return _band_cache[key]


def sliding_chunk_scores(q, k, w):
    """Band of q.k over keys i-w..i+w via the chunked einsum: (BH, T, 2w+1), -inf outside the sequence."""
    bh, t, d = q.shape
    s = torch.einsum("bcxd,bcyd->bcxy", chunk_view(q, w), chunk_view(k, w))  # (BH, n, 2w, 2w)
    flat = torch.cat([s.reshape(bh, -1), s.new_full((bh, 1), float("-inf"))], dim=1)
    return flat[:, band_index(t, w, q.device)]


def sliding_chunk_values(p, v, w):
    """out_i = sum_o p[i, o] v[i + o - w] with chunks of 3w padded values: (BH, T, d)."""
    bh, t, d = v.shape
    nb = t // w
    pc = p.reshape(bh, nb, w, 2 * w + 1)
    # shift row x of every block right by x: (w, 2w+1) -> (w, 3w)
    pc = F.pad(pc, (0, w + 1)).reshape(bh, nb, w * (3 * w + 2))[:, :, : w * (3 * w + 1)]
    pc = pc.reshape(bh, nb, w, 3 * w + 1)[:, :, :, : 3 * w]
    vp = F.pad(v, (0, 0, w, w), value=-1.0).contiguous()  # padded slots carry zero probability
    vc = vp.as_strided((bh, nb, 3 * w, d), (vp.stride(0), w * vp.stride(1), vp.stride(1), vp.stride(2)))
    return torch.einsum("bcxy,bcyd->bcxd", pc, vc).reshape(bh, t, d)


class LocalMaskedMHCA(nn.Module):
    def __init__(self, c, heads, window, stride):
        super().__init__()
        self.h, self.d, self.w = heads, c // heads, window // 2
        self.scale = 1.0 / math.sqrt(self.d)
        self.query_conv = MaskedConv(c, c, 3, stride, groups=c, bias=False)
        self.key_conv = MaskedConv(c, c, 3, stride, groups=c, bias=False)
        self.value_conv = MaskedConv(c, c, 3, stride, groups=c, bias=False)
        self.query_norm, self.key_norm, self.value_norm = ChannelLayerNorm(c), ChannelLayerNorm(c), ChannelLayerNorm(c)
        self.key, self.query, self.value, self.proj = (nn.Conv1d(c, c, 1) for _ in range(4))

    def forward(self, x, mask):
        B, C, _ = x.shape
        q, qmask = self.query_conv(x, mask)
        k, kvmask = self.key_conv(x, mask)
        v, _ = self.value_conv(x, mask)
        q, k, v = self.query(self.query_norm(q)), self.key(self.key_norm(k)), self.value(self.value_norm(v))
        T = q.shape[-1]
        q, k, v = (z.view(B, self.h, self.d, T).transpose(2, 3).reshape(B * self.h, T, self.d) for z in (q, k, v))
        att = sliding_chunk_scores(q * self.scale, k, self.w)  # (B*H, T, 2w+1)
        # -1e4 on keys in the padded tail (slots outside the sequence already -inf)
        kvm = kvmask.view(B, T)
        pad = torch.where(kvm > 0, torch.zeros_like(kvm), torch.full_like(kvm, -1e4))
        padded = F.pad(pad, (self.w, self.w))  # key j -> index j + w
        band = padded.unfold(1, 2 * self.w + 1, 1)  # (B, T, 2w+1)
        att = att.view(B, self.h, T, -1) + band[:, None]
        att = torch.softmax(att, dim=-1)
        att = att.masked_fill(~(kvm > 0)[:, None, :, None], 0.0).view(B * self.h, T, -1)
        out = sliding_chunk_values(att, v, self.w)
        out = out.view(B, self.h, T, self.d).transpose(2, 3).reshape(B, C, T)
        return self.proj(out) * qmask, qmask


class TransformerBlock(nn.Module):
    def __init__(self, c, heads, window, stride, pdrop):
        super().__init__()
        self.stride = stride
        self.ln1, self.ln2 = ChannelLayerNorm(c), ChannelLayerNorm(c)
        self.attn = LocalMaskedMHCA(c, heads, window, stride)
        self.mlp = nn.Sequential(nn.Conv1d(c, 4 * c, 1), nn.GELU(), nn.Identity(), nn.Conv1d(4 * c, c, 1))
        self.drop_path_attn, self.drop_path_mlp = AffineDropPath(c, pdrop), AffineDropPath(c, pdrop)

    def forward(self, x, mask):
        y, m = self.attn(self.ln1(x), mask)
        skip = F.max_pool1d(x, self.stride + 1, self.stride, (self.stride + 1) // 2) if self.stride > 1 else x
        out = skip * m + self.drop_path_attn(y)
        out = out + self.drop_path_mlp(self.mlp(self.ln2(out)) * m)
        return out, m


class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        mdl = cfg["model"]
        cin, c, arch = mdl["input_dim"], mdl["embd_dim"], mdl["backbone_arch"]
        win = mdl["n_mha_win_size"]
        win = win if isinstance(win, list) else [win] * (arch[2] + 1)
        pdrop = cfg["train_cfg"]["droppath"]
        ks = mdl["embd_kernel_size"]
        self.embd = nn.ModuleList(MaskedConv(cin if i == 0 else c, c, ks, bias=False) for i in range(arch[0]))
        self.embd_norm = nn.ModuleList(ChannelLayerNorm(c) for _ in range(arch[0]))
        self.stem = nn.ModuleList(TransformerBlock(c, mdl["n_head"], win[0], 1, pdrop) for _ in range(arch[1]))
        self.branch = nn.ModuleList(
            TransformerBlock(c, mdl["n_head"], win[1 + i], mdl["scale_factor"], pdrop) for i in range(arch[2]))

    def forward(self, x, mask):
        for conv, norm in zip(self.embd, self.embd_norm):
            x, mask = conv(x, mask)
            x = F.relu(norm(x))
        for b in self.stem:
            x, mask = b(x, mask)
        feats, masks = [x], [mask]
        for b in self.branch:
            x, mask = b(x, mask)
            feats.append(x)
            masks.append(mask)
        return feats, masks


class Head(nn.Module):
    def __init__(self, c, feat, layers, ks, nout, out_name, levels=0):
        super().__init__()
        self.head = nn.ModuleList(MaskedConv(c if i == 0 else feat, feat, ks, bias=False) for i in range(layers - 1))
        self.norm = nn.ModuleList(ChannelLayerNorm(feat) for _ in range(layers - 1))
        self.out_name = out_name
        setattr(self, out_name, MaskedConv(feat, nout, ks))
        if levels:
            self.scale = nn.ModuleList(nn.Module() for _ in range(levels))
            for s in self.scale:
                s.scale = nn.Parameter(torch.ones(()))

    def forward(self, feats, masks):
        outs = []
        for lvl, (x, m) in enumerate(zip(feats, masks)):
            for conv, norm in zip(self.head, self.norm):
                x, _ = conv(x, m)
                x = F.relu(norm(x))
            x, _ = getattr(self, self.out_name)(x, m)
            if hasattr(self, "scale"):
                x = F.relu(x * self.scale[lvl].scale)
            outs.append(x)
        return outs


class ActionFormer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        mdl = cfg["model"]
        levels = mdl["backbone_arch"][2] + 1
        self.backbone = Backbone(cfg)
        self.neck = nn.Module()
        self.neck.fpn_norms = nn.ModuleList(ChannelLayerNorm(mdl["fpn_dim"]) for _ in range(levels))
        args = (mdl["fpn_dim"], mdl["head_dim"], mdl["head_num_layers"], mdl["head_kernel_size"])
        self.cls_head = Head(*args, mdl["num_classes"], "cls_head")
        self.reg_head = Head(*args, 2, "offset_head", levels=levels)

    def forward(self, x, mask):
        feats, masks = self.backbone(x, mask)
        feats = [n(f) for n, f in zip(self.neck.fpn_norms, feats)]
        return self.cls_head(feats, masks), self.reg_head(feats, masks), feats, masks


def load_model(path):
    tensors, meta = read_safetensors(path)
    cfg = json.loads(meta["config"])
    if cfg.get("flowless", {}).get("arch", "actionformer") != "actionformer":
        raise SystemExit(f"{path}: only the ActionFormer architecture is re-implemented here")
    if cfg["model"].get("fpn_type", "identity") != "identity" or cfg["model"].get("use_abs_pe"):
        raise SystemExit(f"{path}: the comparison covers the identity neck without position encoding")
    model = ActionFormer(cfg)
    sd = model.state_dict()
    missing = set(sd) - set(tensors)
    extra = set(tensors) - set(sd)
    if missing or extra:
        raise SystemExit(f"{path}: parameter names differ: missing {sorted(missing)[:5]} extra {sorted(extra)[:5]}")
    model.load_state_dict({k: torch.from_numpy(tensors[k]).reshape(sd[k].shape) for k in sd})
    return model, cfg


# ----------------------------------------------------------------------------- loss (training step)
def make_points(cfg, T):
    mdl = cfg["model"]
    rr = mdl["regression_range"]
    pts = []
    for lvl in range(mdl["backbone_arch"][2] + 1):
        s = mdl["scale_factor"] ** lvl
        t = torch.arange(0, T, s, dtype=torch.float32)
        n = t.numel()
        pts.append(torch.stack([t, torch.full((n,), float(rr[lvl][0])), torch.full((n,), float(rr[lvl][1])),
                                torch.full((n,), float(s))], 1))
    return torch.cat(pts, 0)


@torch.no_grad()
def label_points(pts, segs, labels, num_classes, radius):
    """Center sampling + regression range + shortest GT (actionformer.md A.5)."""
    n, m = pts.shape[0], segs.shape[0]
    t = pts[:, :1]
    left = t - segs[None, :, 0]
    right = segs[None, :, 1] - t
    c = 0.5 * (segs[None, :, 0] + segs[None, :, 1])
    lo = torch.maximum(c - pts[:, 3:4] * radius, segs[None, :, 0])
    hi = torch.minimum(c + pts[:, 3:4] * radius, segs[None, :, 1])
    inside = torch.minimum(t - lo, hi - t) > 0
    mx = torch.maximum(left, right)
    in_range = (mx >= pts[:, 1:2]) & (mx <= pts[:, 2:3])
    lens = (segs[:, 1] - segs[:, 0])[None].expand(n, m)
    lens = torch.where(inside & in_range, lens, torch.full_like(lens, float("inf")))
    min_len, idx = lens.min(1)
    hit = (lens <= min_len[:, None] + 1e-3) & torch.isfinite(min_len)[:, None]
    cls = (F.one_hot(labels, num_classes).float()[None] * hit[..., None].float()).sum(1).clamp(max=1.0)
    off = torch.stack([left[torch.arange(n), idx], right[torch.arange(n), idx]], 1) / pts[:, 3:4]
    return cls, off


def focal_loss_sum(x, y, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    pt = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - pt) ** gamma
    return ((alpha * y + (1 - alpha) * (1 - y)) * loss).sum()


def diou_loss_sum(pred, tgt, eps=1e-8):
    lp, rp, lg, rg = pred[:, 0], pred[:, 1], tgt[:, 0], tgt[:, 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = lp + rp + lg + rg - inter
    iou = inter / union.clamp(min=eps)
    enc = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    rho = 0.5 * ((rp - lp) - (rg - lg))
    return (1.0 - iou + (rho / enc.clamp(min=eps)) ** 2).sum()


class Criterion:
    def __init__(self, cfg):
        self.norm = float(cfg["train_cfg"]["init_loss_norm"])
        self.num_classes = cfg["model"]["num_classes"]
        self.radius = cfg["train_cfg"]["center_sample_radius"]

    def __call__(self, cls_out, reg_out, masks, pts, gts):
        logits = torch.cat([c.permute(0, 2, 1) for c in cls_out], 1)  # (B, N, C)
        offs = torch.cat([r.permute(0, 2, 1) for r in reg_out], 1)
        valid = torch.cat([m[:, 0] for m in masks], 1) > 0
        tc, to = zip(*[label_points(pts, s, l, self.num_classes, self.radius) for s, l in gts])
        tc, to = torch.stack(tc), torch.stack(to)
        pos = (tc.sum(-1) > 0) & valid
        self.norm = 0.9 * self.norm + 0.1 * max(int(pos.sum()), 1)
        cls = focal_loss_sum(logits[valid], tc[valid]) / self.norm
        reg = diou_loss_sum(offs[pos], to[pos]) / self.norm if pos.any() else 0 * offs.sum()
        return cls + reg


# ----------------------------------------------------------------------------- timing helpers
def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def time_it(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


TUNED_MALLOC = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=17179869184"
ORIG_TUNABLES = "FLOWLESS_CMP_CALLER_GLIBC_TUNABLES"  # the caller's GLIBC_TUNABLES across the re-exec


def child_env():
    """The caller's environment: the flowless processes never inherit the tuned PyTorch malloc."""
    env = dict(os.environ)
    if ORIG_TUNABLES in env:
        orig = env.pop(ORIG_TUNABLES)
        if orig:
            env["GLIBC_TUNABLES"] = orig
        else:
            env.pop("GLIBC_TUNABLES", None)
    return env


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), **kw)
    if r.returncode != 0:
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def blas_library():
    """The BLAS Debian's PyTorch loads (libblas.so.3 through the alternatives system)."""
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"):
        path = os.path.join(d, "libblas.so.3")
        if os.path.exists(path):
            return os.path.realpath(path)
    return "unknown (no libblas.so.3 found)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="CMake build folder holding bench/flowless_dump_heads")
    ap.add_argument("--flowless", default="", help="the flowless CLI; its `bench --json` gives the flowless numbers")
    ap.add_argument("--model", default="", help="flowless model file (default: random actionformer-thumos)")
    ap.add_argument("--preset", default="actionformer-thumos")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--T", type=int, default=2304, help="snippets of the test video")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="alternate flowless / PyTorch timings this many times")
    ap.add_argument("--no-train", action="store_true", help="skip the training-step comparison")
    ap.add_argument("--tol", type=float, default=1e-3, help="parity tolerance (|a-b| / max(1,|b|))")
    ap.add_argument("--json", default="", help="write all numbers to this file")
    ap.add_argument("--bf16", action="store_true",
                    help="also time the inference forward in bfloat16: flowless --precision bf16, and PyTorch under "
                         "torch.autocast('cpu', dtype=torch.bfloat16)")
    ap.add_argument("--torch-malloc", choices=["tuned", "default"], default="tuned",
                    help="PyTorch's glibc malloc: tuned (freed blocks stay mapped; PyTorch at its best) or default "
                         "(as shipped: large blocks are page-faulted on every call); see the module docstring")
    args = ap.parse_args()
    if args.torch_malloc == "tuned" and ORIG_TUNABLES not in os.environ:
        env = dict(os.environ, GLIBC_TUNABLES=TUNED_MALLOC)
        env[ORIG_TUNABLES] = os.environ.get("GLIBC_TUNABLES", "")
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    print(f"PyTorch malloc: {args.torch_malloc}" +
          (f" (GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES')})" if args.torch_malloc == "tuned" else ""))
    blas = blas_library()
    print(f"PyTorch BLAS: {blas}")
    if "openblas" not in blas.lower():
        print("WARNING: PyTorch's BLAS is not OpenBLAS (issue #6's baseline). Debian's reference BLAS makes its "
              "matrix products (the attention's einsums) many times slower, which inflates the ratios below: "
              "apt-get install libopenblas0-pthread")

    torch.set_num_threads(args.threads)
    dump = os.path.join(args.build, "bench", "flowless_dump_heads")
    if not os.path.exists(dump):
        raise SystemExit(f"{dump} not found: build it (ninja -C {args.build} flowless_dump_heads)")
    tmp = tempfile.mkdtemp(prefix="flowless_cmp_")
    try:
        model_path = args.model or os.path.join(tmp, "model.safetensors")
        if not args.model:
            run([dump, "--init", args.preset, model_path])
        model, cfg = load_model(model_path)
        mdl = cfg["model"]
        cin = mdl["input_dim"]
        rng = np.random.default_rng(12345)
        feats = rng.random((args.T, cin), dtype=np.float32)
        np.save(os.path.join(tmp, "feats.npy"), feats)
        heads_path = os.path.join(tmp, "heads.safetensors")
        run([dump, model_path, os.path.join(tmp, "feats.npy"), heads_path, "--threads", str(args.threads)])
        ref, hmeta = read_safetensors(heads_path)
        Tbuf = int(hmeta["buffer_T"])

        # ---- parity: same padded buffer, mask = valid prefix
        x = torch.zeros(1, cin, Tbuf)
        x[0, :, : args.T] = torch.from_numpy(feats).t()
        mask = torch.zeros(1, 1, Tbuf)
        mask[..., : args.T] = 1.0
        model.eval()
        with torch.no_grad():
            cls_out, reg_out, fpn, masks = model(x, mask)
        worst = {}
        for lvl in range(len(cls_out)):
            n = int(masks[lvl][0, 0].sum())
            for name, t in (("cls_logits", cls_out[lvl]), ("offsets", reg_out[lvl]), ("fpn_feats", fpn[lvl])):
                a = t[0, :, :n].t().numpy()
                b = ref[f"{name}.{lvl}"]
                if a.shape != b.shape:
                    raise SystemExit(f"{name}.{lvl}: shape {a.shape} vs flowless {b.shape}")
                err = float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))))
                worst[name] = max(worst.get(name, 0.0), err)
        print(f"parity (buffer T={Tbuf}, {len(cls_out)} levels), worst |torch - flowless| / max(1, |flowless|):")
        for k, v in worst.items():
            print(f"  {k:11s} {v:.3e}")
        parity_ok = all(v <= args.tol for v in worst.values())
        print("  parity", "OK" if parity_ok else f"FAILED (tol {args.tol})")

        # ---- training batch (shared by the torch rounds)
        Tt = mdl["max_seq_len"]
        lens = [Tt, Tt - Tt // 5]
        xt = torch.from_numpy(rng.random((2, cin, Tt), dtype=np.float32))
        xt[1, :, lens[1]:] = 0
        mt = torch.zeros(2, 1, Tt)
        for b, L in enumerate(lens):
            mt[b, :, :L] = 1.0
        gts = []
        for b in range(2):
            ln = rng.uniform(4.0, 80.0, 8)
            st = rng.uniform(0.0, lens[1] - ln - 1)
            gts.append((torch.tensor(np.stack([st, st + ln], 1), dtype=torch.float32),
                        torch.from_numpy(rng.integers(0, mdl["num_classes"], 8))))
        pts = make_points(cfg, Tt)
        crit = Criterion(cfg)
        # the reference's decay groups: Conv1d weights decay, everything else (norms, scales, biases) does not
        conv_w = {id(m.weight) for m in model.modules() if isinstance(m, nn.Conv1d)}
        decay = [p for p in model.parameters() if id(p) in conv_w]
        other = [p for p in model.parameters() if id(p) not in conv_w]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}], lr=1e-4)

        def torch_forward():
            with torch.no_grad():
                model(x, mask)

        def torch_forward_bf16():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                model(x, mask)

        def torch_train():
            t0 = time.perf_counter()
            cls_o, reg_o, _, ms = model(xt, mt)
            loss = crit(cls_o, reg_o, ms, pts, gts)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t1 = time.perf_counter()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return t1 - t0, time.perf_counter() - t1

        if args.flowless:
            bench_cmd = [args.flowless, "bench", "--json"]
        else:
            bench_cmd = [os.path.join(args.build, "bench", "flowless_model_bench")]
        bench_cmd += ["--preset", args.preset, "--T", str(args.T), "--threads", str(args.threads),
                      "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
        if not args.no_train:
            bench_cmd.append("--train")

        # One more warmup step for training than asked (as flowless bench does):
        # the first optimizer step allocates AdamW's state, so the second step
        # still grows the allocator's pool.
        train_warmup = args.warmup + 1 if args.warmup > 0 else 0
        rounds = []
        for r in range(args.rounds):
            fl = json.loads(run(bench_cmd))
            model.eval()
            t_fwd = median(time_it(torch_forward, args.warmup, args.repeats))
            rec = {"flowless": fl, "torch_forward_seconds": t_fwd}
            if not args.no_train:
                model.train()
                parts = [torch_train() for _ in range(train_warmup + args.repeats)][train_warmup:]
                rec["torch_train_fwd_bwd_seconds"] = median([p[0] for p in parts])
                rec["torch_train_step_seconds"] = median([p[0] + p[1] for p in parts])
                model.eval()
            if args.bf16:
                fl16 = json.loads(run(bench_cmd + ["--precision", "bf16", "--train-precision", "bf16"]))
                rec["flowless_bf16"] = fl16
                rec["torch_forward_bf16_seconds"] = median(time_it(torch_forward_bf16, args.warmup, args.repeats))
                if not args.no_train:
                    model.train()
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        parts = [torch_train() for _ in range(train_warmup + args.repeats)][train_warmup:]
                    rec["torch_train_step_bf16_seconds"] = median([p[0] + p[1] for p in parts])
                    model.eval()
            rounds.append(rec)
            f_net, f_inf = fl["network_seconds"], fl["inference_seconds"]
            line = (f"round {r + 1}: forward  torch {t_fwd:.3f}s  flowless network {f_net:.3f}s "
                    f"(x{t_fwd / f_net:.2f})  flowless detect {f_inf:.3f}s (x{t_fwd / f_inf:.2f})")
            print(line)
            if not args.no_train:
                f_tr = fl["train_step_seconds"]
                f_fb = fl["train_step_parts"]["forward"] + fl["train_step_parts"]["loss"] + fl["train_step_parts"]["backward"]
                print(f"         train    torch step {rec['torch_train_step_seconds']:.3f}s  flowless step {f_tr:.3f}s "
                      f"(x{rec['torch_train_step_seconds'] / f_tr:.2f}); fwd+loss+bwd torch "
                      f"{rec['torch_train_fwd_bwd_seconds']:.3f}s flowless {f_fb:.3f}s "
                      f"(x{rec['torch_train_fwd_bwd_seconds'] / f_fb:.2f})")
            if args.bf16:
                b_net, b_inf = rec["flowless_bf16"]["network_seconds"], rec["flowless_bf16"]["inference_seconds"]
                tb = rec["torch_forward_bf16_seconds"]
                print(f"         bf16     flowless network {b_net:.3f}s, detect {b_inf:.3f}s: x{t_fwd / b_net:.2f} / "
                      f"x{t_fwd / b_inf:.2f} vs torch fp32, x{tb / b_net:.2f} vs torch bf16 autocast ({tb:.3f}s)")
                if not args.no_train:
                    b_tr = rec["flowless_bf16"]["train_step_seconds"]
                    tt = rec["torch_train_step_bf16_seconds"]
                    print(f"         bf16     train step flowless {b_tr:.3f}s: x{rec['torch_train_step_seconds'] / b_tr:.2f} vs "
                          f"torch fp32, x{tt / b_tr:.2f} vs torch bf16 autocast ({tt:.3f}s)")
            print(f"         flowless {fl['network_gflops']:.1f} GFLOP/s network vs {fl['gemm_gflops']:.1f} GFLOP/s GEMM, "
                  f"peak RSS {fl['peak_rss_mb']:.0f} MB")

        summary = {
            "threads": args.threads, "T": args.T, "buffer_T": Tbuf, "parity_worst": worst, "parity_ok": parity_ok,
            "torch_malloc": args.torch_malloc, "torch_blas": blas,
            "speedup_network_forward": median([r["torch_forward_seconds"] / r["flowless"]["network_seconds"] for r in rounds]),
            "speedup_inference_vs_torch_forward": median(
                [r["torch_forward_seconds"] / r["flowless"]["inference_seconds"] for r in rounds]),
        }
        if args.bf16:
            summary["bf16_speedup_network_vs_torch_fp32"] = median(
                [r["torch_forward_seconds"] / r["flowless_bf16"]["network_seconds"] for r in rounds])
            summary["bf16_speedup_inference_vs_torch_fp32"] = median(
                [r["torch_forward_seconds"] / r["flowless_bf16"]["inference_seconds"] for r in rounds])
            summary["bf16_speedup_network_vs_torch_bf16"] = median(
                [r["torch_forward_bf16_seconds"] / r["flowless_bf16"]["network_seconds"] for r in rounds])
            if not args.no_train:
                summary["bf16_speedup_train_step_vs_torch_fp32"] = median(
                    [r["torch_train_step_seconds"] / r["flowless_bf16"]["train_step_seconds"] for r in rounds])
                summary["bf16_speedup_train_step_vs_torch_bf16"] = median(
                    [r["torch_train_step_bf16_seconds"] / r["flowless_bf16"]["train_step_seconds"] for r in rounds])
        if not args.no_train:
            summary["speedup_train_step"] = median(
                [r["torch_train_step_seconds"] / r["flowless"]["train_step_seconds"] for r in rounds])
        print("median over rounds:", json.dumps(summary, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"summary": summary, "rounds": rounds}, f, indent=1)
        return 0 if parity_ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
