"""fclens: explain the last (fully connected) layer of image classifiers."""

__version__ = "0.1.0"
