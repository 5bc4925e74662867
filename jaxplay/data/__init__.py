"""Datasets small enough to live on the device, and the registry that maps `data.name` to one."""

from jaxplay.data.arrays import Dataset, load

__all__ = ["Dataset", "load"]
