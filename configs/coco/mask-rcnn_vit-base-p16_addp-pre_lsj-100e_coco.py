# Mask R-CNN with an ADDP ViT-B/16 backbone on COCO, in the ViTDet recipe that the ADDP paper uses
# for detection (ViTDet's model on mmdet's Mask R-CNN, ViTDet's LSJ 100-epoch schedule and
# optimizer). Paper (ADDP, ICLR 2024, downstream results table): AP box 51.7.
#
#   python tools/train.py configs/coco/mask-rcnn_vit-base-p16_addp-pre_lsj-100e_coco.py
#   python tools/test.py  configs/coco/mask-rcnn_vit-base-p16_addp-pre_lsj-100e_coco.py CKPT
#
# The encoder starts from model.backbone.init_cfg.checkpoint, the released ADDP file.
_base_ = [
    '../_base_/models/mask-rcnn_vit-base-p16_vitdet.py',
    '../_base_/vitdet_lsj-100e_coco-instance.py',
]
