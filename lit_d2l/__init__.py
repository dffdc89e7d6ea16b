"""lit-d2l: Dive into Deep Learning's models and studies on PyTorch Lightning, tracked in MLflow."""

__version__ = "0.1.0"
