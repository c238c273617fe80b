"""Runnable demos of emotion-tool; each is `python -m demos.NAME` (`python -m demos` lists them)."""
