"""outcore: out-of-core, persistent, transactional N-dimensional NumPy arrays."""

from outcore._outcore import __version__

__all__ = ["__version__"]
