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
