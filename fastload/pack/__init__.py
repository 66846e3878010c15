"""Packing datasets into stores: sources, validation, conversion, and the parallel writer."""

from fastload.pack.packer import PackOptions, convert, is_store, pack

__all__ = ["PackOptions", "convert", "is_store", "pack"]
