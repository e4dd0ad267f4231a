# COCO test-dev, the split of the paper's detection table: the ViT-l model's predictions on the
# test-dev images in COCO's result format for the evaluation server (mmdet's convention: CocoMetric
# with format_only=True computes no metric, the server does).
#
#   python tools/test.py configs/coco/mask-rcnn_vit-large-p16_addp-pre_lsj-100e_coco-test-dev.py CKPT
#   -> work_dirs/coco_test-dev/mask-rcnn_vit-large-p16_addp-pre.{bbox,segm}.json
#
# Needs data/coco/test2017/ and data/coco/annotations/image_info_test-dev2017.json (COCO's
# image_info_test2017.zip); submitting: configs/coco/README.md.
_base_ = './mask-rcnn_vit-large-p16_addp-pre_lsj-100e_coco.py'

data_root = 'data/coco/'
image_size = (1024, 1024)
# the evaluation pipeline of the recipe without LoadAnnotations (test-dev has none)
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(103.53, 116.28, 123.675))),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
test_dataloader = dict(
    dataset=dict(data_root=data_root, ann_file='annotations/image_info_test-dev2017.json',
                 data_prefix=dict(img='test2017/'), test_mode=True, pipeline=test_pipeline))
test_evaluator = dict(
    type='CocoMetric', metric=['bbox', 'segm'], format_only=True,
    ann_file=data_root + 'annotations/image_info_test-dev2017.json',
    outfile_prefix='./work_dirs/coco_test-dev/mask-rcnn_vit-large-p16_addp-pre')
