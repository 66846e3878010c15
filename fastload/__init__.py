"""fastload: packed image stores and GPU data loading for training YOLOv5-family detectors."""

__version__ = "0.1.0"
