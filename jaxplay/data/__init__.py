"""Datasets small enough to live on the device, and the registry that maps `data.name` to one."""

from jaxplay.data.arrays import check, load
from jaxplay.data.dataset import Dataset

__all__ = ["Dataset", "check", "load"]
