"""Data sets: a registry of known sets and one loader per distribution format."""

from gendd.data.base import ImageDataset, denormalize, normalize
from gendd.data.registry import (DATASETS, DatasetInfo, dataset_info, download_dataset,
                                 load_dataset)

__all__ = ["ImageDataset", "DATASETS", "DatasetInfo", "dataset_info", "download_dataset",
           "load_dataset", "normalize", "denormalize"]
