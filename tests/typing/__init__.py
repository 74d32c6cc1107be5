"""Typing cases: checked by mypy, never run."""
