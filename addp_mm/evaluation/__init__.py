"""Evaluation of generated images: FID and Inception Score through torch-fidelity (imported
lazily, only when a metric is computed)."""
from .fid import (ImageFiles, compute_fid_is, extract_features, fid_from_statistics, list_images,
                  load_statistics, save_statistics, statistics_from_features)

__all__ = ['ImageFiles', 'compute_fid_is', 'extract_features', 'fid_from_statistics', 'list_images',
           'load_statistics', 'save_statistics', 'statistics_from_features']
