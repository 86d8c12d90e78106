"""Paths and counts as the runner prints them (no TensorFlow)."""

from __future__ import annotations

import os

from supcon.experiment.options import ROOT


def count(n: int, noun: str) -> str:
    """`1 point`, `3 points`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def rel(path: str) -> str:
    """A path relative to the working directory when inside it, else as given."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def repo_path(path: str) -> str:
    """A path relative to the repository when inside it, else absolute."""
    relative = os.path.relpath(path, ROOT)
    return path if relative.startswith("..") else relative


def command_path(path: str) -> str:
    """A path as a command shows it: relative to the repository (where `python runner.py` runs) or to the working
    directory when inside either, else absolute."""
    path = os.path.abspath(path)
    for base in (ROOT, os.getcwd()):
        relative = os.path.relpath(path, base)
        if not relative.startswith(".."):
            return relative
    return path
