"""minires.data: datasets, the DataLoader, batch transforms (augmentation) and the image sources
that ``minires train --data`` reads: "digits", "cifar10:PATH" and "folder:PATH"."""
from . import transforms
from .dataset import ArrayDataset, Dataset
from .distributed import DistributedSampler, Subset
from .loader import DataLoader
from .sources import Source, load_source

__all__ = ["Dataset", "ArrayDataset", "Subset", "DistributedSampler", "DataLoader", "transforms", "Source", "load_source"]
