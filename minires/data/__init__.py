"""minires.data: datasets, the DataLoader, batch transforms (augmentation), the image sources
that ``minires train --data`` reads ("digits", "cifar10:PATH" and "folder:PATH"), and prefetch
(batches copied to a device one step ahead of their use)."""
from . import transforms
from .dataset import ArrayDataset, Dataset
from .distributed import DistributedSampler, Subset
from .loader import DataLoader
from .prefetch import prefetch
from .sources import Source, load_source

__all__ = ["Dataset", "ArrayDataset", "Subset", "DistributedSampler", "DataLoader", "prefetch", "transforms", "Source", "load_source"]
