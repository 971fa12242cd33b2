# A small TemporalMaxer in OpenTAD's config layout (dev/opentad_reference.py).
_base_ = ["../base_dataset.py", "base_model.py"]

model = dict(
    projection=dict(in_channels=32, out_channels=32, drop_out=0.2),
    neck=dict(in_channels=32, out_channels=32),
    rpn_head=dict(num_classes=5, in_channels=32, feat_channels=32),
)
solver = dict(train=dict(batch_size=2, num_workers=2), test=dict(batch_size=1, num_workers=1),
              clip_grad_norm=1, ema=True)
optimizer = dict(type="AdamW", lr=1e-4, weight_decay=0.05, paramwise=True)
scheduler = dict(type="LinearWarmupCosineAnnealingLR", warmup_epoch=5, max_epoch=65)
post_processing = dict(
    pre_nms_topk=2000,
    pre_nms_thresh=0.001,
    nms=dict(use_soft_nms=True, sigma=0.5, max_seg_num=200, iou_threshold=0, min_score=0.001,
             multiclass=True, voting_thresh=0.7),
    save_dict=False,
)
