"""The bundled YOLOv5 trainer: the model and the loss today; optimiser, EMA, training and validation follow
(issue 4), fused kernels beside their references in `yolo/kernels` (issue 5)."""
