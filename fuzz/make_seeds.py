#!/usr/bin/env python3
# Regenerates the seed corpus fuzz/corpus/<target>/ (Python 3 standard library
# only). Seeds are small valid and near-valid inputs; libFuzzer mutates them.
# Regression inputs found by fuzzing live next to them as crash-*/regress-*
# files and are kept when this script is re-run.
import json, os, shutil, struct, zipfile

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
io_data = os.path.join(root, "tests", "data", "io")


def out(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def rd(name):
    with open(os.path.join(io_data, name), "rb") as f:
        return f.read()


# npy: the test fixtures (every dtype family, both byte orders, versions 1-3, fortran order)
for f in sorted(os.listdir(io_data)):
    if f.endswith(".npy"):
        out("npy", f, rd(f))

# zip / npz
for f in ["stored.npz", "zip64.npz", "compressed.npz"]:
    out("zip", f, rd(f))

# pth: mode 0 = raw archive; mode 1/3 = pickle 0xFF 0xFE storage (archive built by the target)
for f in ["linear.pth", "evil.pth", "views_p4.pth"]:
    out("pth", "raw-" + f, b"\x00" + rd(f))
z = zipfile.ZipFile(os.path.join(io_data, "linear.pth"))
pkl = z.read("linear/data.pkl")
storage = z.read("linear/data/0")  # data/1 (12 bytes) is its first half in the target's layout
out("pth", "built-linear", b"\x01" + pkl + b"\xff\xfe" + storage)
out("pth", "built-linear-big", b"\x07" + pkl + b"\xff\xfe" + storage)
z = zipfile.ZipFile(os.path.join(io_data, "views.pth"))
out("pth", "built-views", b"\x03" + z.read("views/data.pkl") + b"\xff\xfe" + z.read("views/data/0"))


# safetensors
def st(header, data=b""):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


out("safetensors", "two", st({"__metadata__": {"format": "pt"},
                              "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                              "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}},
                             struct.pack("<4f", 1, -2, 3.5, 0) + struct.pack("<q", -7)))
out("safetensors", "dtypes", st({"h": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
                                 "bf": {"dtype": "BF16", "shape": [1], "data_offsets": [4, 6]},
                                 "u": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]},
                                 "z": {"dtype": "BOOL", "shape": [0, 3], "data_offsets": [8, 8]},
                                 "d": {"dtype": "F64", "shape": [], "data_offsets": [8, 16]}},
                                b"\x00\x3c\x00\xc0" + b"\x80\x3f" + b"\x01\xff" + struct.pack("<d", 2.5)))
out("safetensors", "escapes", st({"na\\u00efve \"x\"": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}},
                                 b"\x01\x00\x00\x00"))
out("safetensors", "empty", st({}))

# json
out("json", "nested", '{"a": [1, -2.5e-3, true, false, null, "s\\u00e9\\ud83d\\ude00\\n"], "b": {"c": {}}, "d": []}')
out("json", "python", '[NaN, Infinity, -Infinity, 1e400, -0.0, 123456789012345678901234567890]')
out("json", "dup", '{"k": 1, "k": 2, "x": "\\"\\\\\\/\\b\\f\\r\\t"}')
out("json", "bom", '\ufeff {"v": [[[[[]]]]]}')
out("json", "big-object", json.dumps({"k%d" % i: i for i in range(20)}))

# annotations
ann = {"version": "thumos-14", "database": {
    "video_validation_0000051": {"subset": "Validation", "duration": 169.79, "fps": 30.0, "annotations": [
        {"label": "BaseballPitch", "segment": [33.5, 35.2], "segment(frames)": [1005, 1056], "label_id": 0},
        {"label": "CliffDiving", "segment": [40.0, 42.1], "label_id": 4},
        {"label": "Diving", "segment": [40.0, 42.1], "label_id": 7}]},
    "video_test_0000004": {"subset": "Test", "duration": 33.4, "fps": 30, "annotations": [
        {"label": "Diving", "segment": [0.2, 1.1]}, {"label_id": 4, "segment": [5, 5]}]}}}
out("annotations", "thumos-like", json.dumps(ann, indent=1))
out("annotations", "names-only", json.dumps({"database": {
    "a": {"subset": "train", "duration": 10, "annotations": [{"label": "z", "segment": [1, 2]},
                                                             {"label": "y", "segment": [3, 30]}]},
    "b": {"subset": "test", "duration": 0, "fps": None}}}))
out("annotations", "ids-only", json.dumps({"version": 2, "database": {
    "c": {"subset": "test", "duration": 5.5, "annotations": [{"label_id": 3, "segment": [0, 1e-4]}]}}}))

# dataset.json
out("dataset_info", "thumos", json.dumps({
    "feat_stride": 4, "num_frames": 16, "default_fps": None, "input_dim": 2048, "num_classes": 20,
    "modalities": {"rgb": [0, 1024], "flow": [1024, 2048]}, "train_split": ["validation"], "test_split": ["test"],
    "max_seq_len": 2304, "trunc_thresh": 0.5, "crop_ratio": [0.9, 1.0], "downsample_rate": 1,
    "name": "thumos14", "_private": {"x": 1}}, indent=2))
out("dataset_info", "minimal", '{"feat_stride": 16, "num_frames": 16, "input_dim": 32, "num_classes": 1}')
out("dataset_info", "fps", '{"feat_stride": 8.5, "num_frames": 0, "default_fps": 25, "input_dim": 4, '
                           '"num_classes": 3, "downsample_rate": 2, "crop_ratio": null, "max_seq_len": 7}')

# predictions (the target evaluates against annotations with classes Jump (0) and Run (1))
out("predictions", "activitynet", json.dumps({"version": "x", "results": {
    "v1": [{"segment": [1.0, 4.4], "label": "Jump", "score": 0.9},
           {"segment": [3.1, 9.0], "label_id": 1, "score": 0.8},
           {"segment": [3.1, 9.0], "label_id": 1, "score": 0.8},
           {"segment": [26, 30], "label": "Run", "score": 0.1}],
    "v2": [{"segment": [0, 10], "label_id": 1, "score": 1}],
    "unknown_video": [{"segment": [0, 1], "label_id": 0, "score": 0.5}]}, "external_data": {}}))
out("predictions", "reference", json.dumps({"database": {
    "v1": [{"segment": [2, 2], "label_id": 0, "scores": 0.3}, {"segment": [5, 1], "label_id": 7, "scores": 0.2}],
    "v3": []}}))

# detector configs (reference layout): the test fixture's, and small ones the target builds and runs
with open(os.path.join(root, "tests", "data", "actionformer_small", "config.json")) as f:
    out("detector_config", "reference_small.json", f.read())
small = {"model": {"backbone_type": "convTransformer", "input_dim": 8, "num_classes": 3, "embd_dim": 8,
                   "fpn_dim": 8, "head_dim": 8, "n_head": 2, "backbone_arch": [1, 1, 2], "n_mha_win_size": 5,
                   "max_seq_len": 64, "fpn_type": "fpn", "head_num_layers": 2},
         "dataset": {"feat_stride": 4, "num_frames": 16},
         "test_cfg": {"pre_nms_topk": 100, "max_seg_num": 20, "nms_method": "soft"}}
out("detector_config", "small_actionformer.json", json.dumps(small))
small["model"].update({"backbone_type": "convPooler", "n_mha_win_size": -1, "use_abs_pe": True})
small["test_cfg"]["nms_method"] = "hard"
out("detector_config", "small_temporalmaxer.json", json.dumps(small))
small["model"].update({"backbone_type": "convTransformer", "fpn_start_level": 1, "embd_kernel_size": 7})
small["flowless"] = {"channels": [0, 8], "inference_padding": "max_seq_len"}
out("detector_config", "small_global_attention.json", json.dumps(small))
