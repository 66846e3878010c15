"""The bundled YOLOv5 trainer (model, loss, fused kernels, EMA, validation). Built in issues 4 and 5."""
