#!/usr/bin/env python3
"""Dev-only cross-check: a pandas-free numpy port of the reference evaluator
(ActionFormer libs/utils/metrics.py, ANETdetection) and of the reference 1-D
NMS (libs/utils/csrc/nms_cpu.cpp + libs/utils/nms.py, run with torch tensors).

Not used by the library or its tests; it produced the numbers embedded in
tests/test_eval.cpp.

  python3 dev/eval_reference.py eval ANN.json PRED.json [split] [tious]
  python3 dev/eval_reference.py detad ANN.json PRED.json [split] [limit_factor]
  python3 dev/eval_reference.py nms-cases
"""
import json
import sys

import numpy as np


# ----------------------------------------------------------------- evaluator
def remove_duplicate_annotations(ants, tol=1e-3):
    valid_events = []
    for event in ants:
        s, e, l = event['segment'][0], event['segment'][1], event['label_id']
        valid = (e - s) >= tol
        for p in valid_events:
            if (abs(s - p['segment'][0]) <= tol and abs(e - p['segment'][1]) <= tol
                    and l == p['label_id']):
                valid = False
                break
        if valid:
            valid_events.append(event)
    return valid_events


def load_gt(ann_file, split):
    db = json.load(open(ann_file))['database']
    rows = []  # (vid, start, end, label)
    for k, v in db.items():
        if split is not None and v['subset'].lower() != split:
            continue
        for ev in remove_duplicate_annotations(v['annotations']):
            rows.append((k, float(ev['segment'][0]), float(ev['segment'][1]), int(ev['label_id'])))
    return rows


def load_pred(pred_file):
    db = json.load(open(pred_file))['database']
    rows = []
    for k, v in db.items():
        for ev in v:
            rows.append((k, float(ev['segment'][0]), float(ev['segment'][1]),
                         int(ev['label_id']), float(ev['scores'])))
    return rows


def segment_iou(target, cands):
    tt1 = np.maximum(target[0], cands[:, 0])
    tt2 = np.minimum(target[1], cands[:, 1])
    inter = (tt2 - tt1).clip(0)
    union = (cands[:, 1] - cands[:, 0]) + (target[1] - target[0]) - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        return inter.astype(float) / union


def interpolated_prec_rec(prec, rec):
    mprec = np.hstack([[0], prec, [0]])
    mrec = np.hstack([[0], rec, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
    return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def group_rows(rows):
    """video-id -> list of (row position, row), in row order (pandas groupby)."""
    g = {}
    for i, r in enumerate(rows):
        g.setdefault(r[0], []).append((i, r))
    return g


def ap_detection(gt, pred, tious):
    """compute_average_precision_detection: the matching (match_flags, below),
    then the interpolated AP of the cumulative counts per threshold."""
    ap = np.zeros(len(tious))
    if len(pred) == 0:
        return ap
    _, tp = match_flags(gt, pred, tious)
    for tidx in range(len(tious)):
        ap[tidx] = ap_of_flags(tp[tidx], float(len(gt)))
    return ap


def topkx_recall(gt, pred, tious, top_k=(1, 5)):
    if len(pred) == 0:
        return np.zeros((len(tious), len(top_k)))
    tp = np.zeros((len(tious), len(top_k)))
    n_gts = 0
    gbv = group_rows(gt)
    pbv = group_rows(pred)
    for vid in sorted(gbv):
        this_gt = gbv[vid]
        n_gts += len(this_gt)
        if vid not in pbv:
            continue
        this_pred = [r for _, r in pbv[vid]]
        scores = np.array([r[4] for r in this_pred])
        top = scores.argsort()[::-1][:max(top_k) * len(this_gt)]
        psegs = np.array([[r[1], r[2]] for r in this_pred])[top]
        gsegs = np.array([[r[1], r[2]] for _, r in this_gt])
        tiou_arr = np.stack([segment_iou(t, gsegs) for t in psegs])
        for tidx, thr in enumerate(tious):
            for kidx, k in enumerate(top_k):
                tiou = tiou_arr[:k * len(this_gt)]
                tp[tidx, kidx] += ((tiou >= thr).sum(axis=0) > 0).sum()
    return tp / n_gts


def evaluate(ann_file, pred_file, split='test', tious=np.linspace(0.3, 0.7, 5)):
    gt = load_gt(ann_file, split)
    pred = load_pred(pred_file)
    classes = sorted(set(r[3] for r in gt))
    ap = np.zeros((len(tious), len(classes)))
    rc = np.zeros((len(tious), 2, len(classes)))
    for ci, c in enumerate(classes):
        g = [r for r in gt if r[3] == c]
        p = [r for r in pred if r[3] == c]
        ap[:, ci] = ap_detection(g, p, tious)
        rc[..., ci] = topkx_recall(g, p, tious)
    mAP = ap.mean(axis=1)
    mrec = rc.mean(axis=2)
    return {'tiou_thresholds': list(tious), 'mAP': mAP.tolist(), 'average_mAP': float(mAP.mean()),
            'recall_at_1x': mrec[:, 0].tolist(), 'recall_at_5x': mrec[:, 1].tolist(),
            'per_class_ap': {str(c): ap[:, ci].tolist() for ci, c in enumerate(classes)}}


# ------------------------------------------- DETAD false-positive analysis
FP_TYPES = ['true_positive', 'double_detection', 'wrong_label', 'localization', 'confusion', 'background']


def match_flags(gt, pred, tious):
    """ap_detection's matching: (predictions by decreasing score, tp[t, i])."""
    scores = np.array([p[4] for p in pred])
    sort_idx = scores.argsort()[::-1]
    pred = [pred[i] for i in sort_idx]
    tp = np.zeros((len(tious), len(pred)))
    lock_gt = np.ones((len(tious), len(gt))) * -1
    gbv = group_rows(gt)
    for idx, p in enumerate(pred):
        if p[0] not in gbv:
            continue
        this_gt = gbv[p[0]]
        segs = np.array([[r[1], r[2]] for _, r in this_gt])
        tiou_arr = segment_iou(np.array([p[1], p[2]]), segs)
        for tidx, thr in enumerate(tious):
            for jdx in tiou_arr.argsort()[::-1]:
                if tiou_arr[jdx] < thr:
                    break
                gi = this_gt[jdx][0]
                if lock_gt[tidx, gi] >= 0:
                    continue
                tp[tidx, idx] = 1
                lock_gt[tidx, gi] = idx
                break
    return pred, tp


def ap_of_flags(tp, npos):
    if len(tp) == 0:
        return interpolated_prec_rec(np.zeros(0), np.zeros(0))
    tp_c = np.cumsum(tp).astype(float)
    fp_c = np.cumsum(1 - tp).astype(float)
    return interpolated_prec_rec(tp_c / (tp_c + fp_c), tp_c / npos)


def detad_fp(ann_file, pred_file, split='test', tious=np.linspace(0.3, 0.7, 5), limit_factor=10, min_tiou=0.1):
    """DETAD's analyze_fp_error_types and average-mAP gains, following
    HumamAlwassel/DETAD src/action_detector_diagnosis.py (pandas-free)."""
    gt = load_gt(ann_file, split)
    classes = sorted(set(r[3] for r in gt))
    pred = [p for p in load_pred(pred_file) if p[3] in classes]
    gt_by_video = group_rows(gt)
    counts = np.zeros((len(tious), len(FP_TYPES)), dtype=int)
    ap = np.zeros((len(FP_TYPES), len(tious), len(classes)))
    n_pred = 0
    for ci, c in enumerate(classes):
        g = [r for r in gt if r[3] == c]
        p = [r for r in pred if r[3] == c]
        if limit_factor:
            # pandas nlargest(n, 'score'), keep='first': by score, ties in frame order
            order = sorted(range(len(p)), key=lambda i: -p[i][4])
            p = [p[i] for i in order[:int(len(g) * limit_factor)]]
        n_pred += len(p)
        if not p:
            continue
        p, tp = match_flags(g, p, tious)
        for tidx, thr in enumerate(tious):
            types = np.zeros(len(p), dtype=int)
            for i, q in enumerate(p):
                if tp[tidx, i]:
                    continue
                if q[0] not in gt_by_video:
                    types[i] = 5
                    continue
                vg = gt_by_video[q[0]]
                tiou_arr = segment_iou(np.array([q[1], q[2]]), np.array([[r[1], r[2]] for _, r in vg]))
                same = vg[tiou_arr.argmax()][1][3] == c
                top = tiou_arr.max()
                if top >= thr:
                    types[i] = 1 if same else 2
                elif top >= min_tiou:
                    types[i] = 3 if same else 4
                else:
                    types[i] = 5
            for e in range(len(FP_TYPES)):
                counts[tidx, e] += int((types == e).sum())
            ap[0, tidx, ci] = ap_of_flags(tp[tidx], float(len(g)))
            for e in range(1, len(FP_TYPES)):
                ap[e, tidx, ci] = ap_of_flags(tp[tidx][types != e], float(len(g)))
    average_map = ap[0].mean()
    return {'num_predictions': n_pred,
            'counts': {FP_TYPES[e]: counts[:, e].tolist() for e in range(len(FP_TYPES))},
            'mAP': ap[0].mean(axis=1).tolist(), 'average_mAP': float(average_map),
            'average_mAP_gain': {FP_TYPES[e]: float(ap[e].mean() - average_map) for e in range(1, len(FP_TYPES))}}


# ----------------------------------------------------------------- NMS (torch)
def nms_cpu(segs, scores, thr):
    import torch
    x1, x2 = segs[:, 0].contiguous(), segs[:, 1].contiguous()
    areas = x2 - x1 + 1e-6
    order = scores.sort(0, descending=True)[1]
    n = segs.shape[0]
    select = [True] * n
    for _i in range(n):
        if not select[_i]:
            continue
        i = order[_i]
        for _j in range(_i + 1, n):
            if not select[_j]:
                continue
            j = order[_j]
            xx1 = torch.maximum(x1[i], x1[j])
            xx2 = torch.minimum(x2[i], x2[j])
            inter = torch.clamp(xx2 - xx1, min=0)
            ovr = inter / (areas[i] + areas[j] - inter)
            if ovr >= thr:
                select[_j] = False
    return order[torch.tensor(select, dtype=torch.bool)]


def softnms_cpu(segs, scores, thr, sigma, min_score, method):
    import torch
    f = torch.float32
    x1 = segs[:, 0].clone()
    x2 = segs[:, 1].clone()
    sc = scores.clone()
    areas = x2 - x1 + 1e-6
    n = segs.shape[0]
    inds = torch.arange(n)
    dets = torch.zeros((n, 3), dtype=f)
    i = 0
    while i < n:
        max_pos = i
        for pos in range(i + 1, n):
            if sc[max_pos] < sc[pos]:
                max_pos = pos
        dets[i, 0], dets[i, 1], dets[i, 2] = x1[max_pos], x2[max_pos], sc[max_pos]
        for arr in (x1, x2, sc, areas, inds):
            a, b = arr[max_pos].clone(), arr[i].clone()
            arr[i], arr[max_pos] = a, b
        pos = i + 1
        while pos < n:
            xx1 = torch.maximum(x1[i], x1[pos])
            xx2 = torch.minimum(x2[i], x2[pos])
            inter = torch.clamp(xx2 - xx1, min=0)
            ovr = inter / (areas[i] + areas[pos] - inter)
            w = torch.tensor(1.0, dtype=f)
            if method == 0:
                if ovr >= thr:
                    w = torch.tensor(0.0, dtype=f)
            elif method == 1:
                if ovr >= thr:
                    w = 1 - ovr
            elif method == 2:
                w = torch.exp(-(ovr * ovr) / torch.tensor(sigma, dtype=f))
            sc[pos] = sc[pos] * w
            if sc[pos] < min_score:
                for arr in (x1, x2, sc, areas, inds):
                    arr[pos] = arr[n - 1].clone()
                n -= 1
                pos -= 1
            pos += 1
        i += 1
    return inds[:n], dets[:n]


def seg_voting(nms_segs, all_segs, all_scores, thr):
    import torch
    nn_, na = nms_segs.shape[0], all_segs.shape[0]
    ex_n = nms_segs[:, None].expand(nn_, na, 2)
    ex_a = all_segs[None, :].expand(nn_, na, 2)
    left = torch.maximum(ex_n[:, :, 0], ex_a[:, :, 0])
    right = torch.minimum(ex_n[:, :, 1], ex_a[:, :, 1])
    inter = (right - left).clamp(min=0)
    iou = inter / ((ex_n[:, :, 1] - ex_n[:, :, 0]) + (ex_a[:, :, 1] - ex_a[:, :, 0]) - inter)
    w = (iou >= thr).to(all_scores.dtype) * all_scores[None, :] * iou
    w /= torch.sum(w, dim=1, keepdim=True)
    return w @ all_segs


def batched_nms(segs, scores, cls, iou_threshold, min_score, max_seg_num, use_soft_nms=True,
                multiclass=True, sigma=0.5, voting_thresh=0.75):
    import torch

    def soft(s, sc, c):
        inds, dets = softnms_cpu(s, sc, iou_threshold, sigma, min_score, 2)
        n = min(len(inds), max_seg_num) if max_seg_num > 0 else len(inds)
        return dets[:n, :2], dets[:n, 2], c[inds][:n]

    def hard(s, sc, c):
        if min_score > 0:
            m = sc > min_score
            s, sc, c = s[m], sc[m], c[m]
        inds = nms_cpu(s, sc, iou_threshold)
        if max_seg_num > 0:
            inds = inds[:min(max_seg_num, len(inds))]
        return s[inds], sc[inds], c[inds]

    op = soft if use_soft_nms else hard
    if segs.shape[0] == 0:
        return segs, scores, cls
    if multiclass:
        out = [op(segs[cls == k], scores[cls == k], cls[cls == k]) for k in torch.unique(cls)]
        ns = torch.cat([o[0] for o in out])
        nsc = torch.cat([o[1] for o in out])
        nc = torch.cat([o[2] for o in out])
    else:
        ns, nsc, nc = op(segs, scores, cls)
        if voting_thresh > 0:
            ns = seg_voting(ns, segs, scores, voting_thresh)
    _, idxs = nsc.sort(descending=True)
    m = min(max_seg_num, ns.shape[0])
    return ns[idxs[:m]], nsc[idxs[:m]], nc[idxs[:m]]


def fmt(xs):
    return '{' + ', '.join(repr(float(x)) + 'f' if isinstance(x, float) else str(x) for x in xs) + '}'


def emit_segments(s, sc, c):
    return 'Segments{%s,\n      %s,\n      %s,\n      %s}' % (
        fmt(s[:, 0].tolist()), fmt(s[:, 1].tolist()), fmt(sc.tolist()), fmt(c.tolist()))


def nms_cases():
    """Prints C++ test code: random problems run through the torch port."""
    import torch
    torch.manual_seed(0)
    n = 60
    problems = []
    for ties in (False, True):
        centers = torch.rand(n) * 50
        lens = torch.rand(n) * 6 + 0.5
        segs = torch.stack([centers - lens / 2, centers + lens / 2], 1).float()
        if ties:  # few distinct scores -> the tie-breaking rules decide the order
            scores = (torch.randint(1, 5, (n,)).float() / 5).float()
        else:
            scores = torch.rand(n).float() ** 2
        cls = torch.randint(0, 3, (n,))
        problems.append((segs, scores, cls))
    configs = [
        ('soft', True, 0.1, 0.5, 0.75, 200),
        ('soft', True, 0.1, 0.5, 0.75, 7),
        ('hard', True, 0.3, 0.5, 0.75, 200),
        ('soft', False, 0.1, 0.75, 0.75, 20),
        ('hard', False, 0.3, 0.5, 0.6, 100),
    ]
    for pi, (segs, scores, cls) in enumerate(problems):
        print('  const Segments problem%d = %s;' % (pi, emit_segments(segs, scores, cls)))
        for method, multi, thr, sigma, vote, cap in configs:
            s, sc, c = batched_nms(segs, scores, cls, thr, 0.001, cap,
                                   use_soft_nms=(method == 'soft'), multiclass=multi,
                                   sigma=sigma, voting_thresh=vote)
            print('  check_batched(problem%d, cfg_of("%s", %s, %rf, %rf, %rf, %d),\n      %s);' % (
                pi, method, 'true' if multi else 'false', thr, sigma, vote, cap,
                emit_segments(s, sc, c)))
        for method in (0, 1, 2):
            inds, dets = softnms_cpu(segs, scores, 0.3, 0.5, 0.05, method)
            print('  check_soft(problem%d, 0.3f, 0.5f, 0.05f, %d, %s,\n      %s);' % (
                pi, method, fmt(inds.tolist()), fmt(dets[:, 2].tolist())))
        print('  CHECK(nms_1d(problem%d.start.data(), problem%d.end.data(), problem%d.score.data(), '
              '%d, 0.3f) == std::vector<int>%s);' % (pi, pi, pi, n, fmt(nms_cpu(segs, scores, 0.3).tolist())))


if __name__ == '__main__':
    if sys.argv[1] == 'eval':
        split = sys.argv[4] if len(sys.argv) > 4 else 'test'
        res = evaluate(sys.argv[2], sys.argv[3], split)
        print(json.dumps(res, indent=1))
    elif sys.argv[1] == 'detad':
        split = sys.argv[4] if len(sys.argv) > 4 else 'test'
        limit = float(sys.argv[5]) if len(sys.argv) > 5 else 10
        print(json.dumps(detad_fp(sys.argv[2], sys.argv[3], split, limit_factor=limit), indent=1))
    elif sys.argv[1] == 'nms-cases':
        nms_cases()
