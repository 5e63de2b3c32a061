"""ssnas: self-supervised, DARTS-style neural architecture search."""

__version__ = "0.1.0"
