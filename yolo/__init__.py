"""The bundled YOLOv5 trainer: the model today; loss, kernels, EMA, training and validation follow (issues 4, 5)."""
