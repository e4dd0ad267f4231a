"""Datasets of addp-mm. The demo-data generator (``demo_data``) is standalone (numpy, Pillow,
scikit-image) and is used by ``tools/make_demo_data.py``; pretraining reads image folders with
mmpretrain's ``CustomDataset(with_label=False)`` and ImageNet with its ``ImageNet``."""
