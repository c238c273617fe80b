"""Errors a user can act on, kept apart from the modules that raise them so they import nothing heavy.

Layer 0, the foundation: imports nothing else from the package.
"""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be found or does not fit the network; the message says why and what to do."""
