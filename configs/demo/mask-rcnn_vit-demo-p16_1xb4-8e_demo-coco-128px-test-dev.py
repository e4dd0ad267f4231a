# The COCO test-dev route of configs/coco/*_coco-test-dev.py on the demo data: the demo val images
# listed without annotations (annotations/image_info_val2017.json, images and categories only, as
# COCO's image_info_test-dev2017.json), predictions written in COCO's result format, no metric.
#
#   python tools/test.py configs/demo/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px-test-dev.py \
#       work_dirs/mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px/epoch_8.pth
#   -> work_dirs/demo_test-dev/mask-rcnn_vit-demo.{bbox,segm}.json
_base_ = './mask-rcnn_vit-demo-p16_1xb4-8e_demo-coco-128px.py'

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
test_dataloader = dict(
    dataset=dict(ann_file='annotations/image_info_val2017.json', data_prefix=dict(img='val2017/'),
                 test_mode=True, pipeline=test_pipeline))
test_evaluator = dict(
    type='CocoMetric', metric=['bbox', 'segm'], format_only=True,
    ann_file='data/demo/coco/annotations/image_info_val2017.json',
    outfile_prefix='./work_dirs/demo_test-dev/mask-rcnn_vit-demo')
