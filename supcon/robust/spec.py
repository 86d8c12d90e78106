"""Which corrupted test sets a run is asked to score, and the result.json keys they give (no TensorFlow).

The trainer (`supcon.robust.evaluation`), the runner and the reporter share these names, so this module imports
neither TensorFlow nor NumPy. The settings are three arguments of the root `train_and_evaluate`:

    train_and_evaluate.corruptions = None | 'all' | ['gaussian_noise', 'fog', ...]   (default None: none)
    train_and_evaluate.corruption_severities = (1, 2, 3, 4, 5)
    train_and_evaluate.corruption_source = 'auto' | 'synthetic' | 'tfds'

Keys written to result.json (accuracies are fractions in [0, 1], as eval/top1; ECE with 15 equal-width bins):
    corruption/<name>/<severity>/top1, corruption/<name>/<severity>/ece    every corruption x severity scored
    corruption/severity_<s>/top1, corruption/severity_<s>/ece              means over the corruptions scored
    corruption/mean/top1                                                   mean over every set scored
e.g. `corruption/gaussian_noise/3/top1`. `requested` reads a recipe's setting as text, so the runner can tell a
finished point whose result.json lacks some of them (it then scores the point in eval mode, no training).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from supcon.workdir import (
    CORRUPTION_NAMES as NAMES,  # the result.json keys are the run directory's contract
)
from supcon.workdir import CORRUPTION_PREFIX as PREFIX
from supcon.workdir import MEAN_TOP1, SEVERITIES, cell_key, severity_key

SOURCES = ("auto", "synthetic", "tfds")
ROOT = "train_and_evaluate"
# Arguments of the root that change what is evaluated, never what is trained: a finished point keeps its
# result when they change, and the runner scores it in eval mode instead of training it again.
EVAL_ONLY_ARGS = ("corruptions", "corruption_severities", "corruption_source", "corruption_cache_dir")
__all__ = ["MEAN_TOP1", "NAMES", "PREFIX", "SEVERITIES", "cell_key", "severity_key"]


def selection(corruptions: Any, severities: Any = SEVERITIES) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Checks `train_and_evaluate.corruptions` and `.corruption_severities`; returns (names, severities).

    Names come back in the paper's order (NAMES) and severities sorted, without duplicates; ((), ()) when
    corruptions is None.

    Raises:
      ValueError: one line naming `train_and_evaluate.corruptions` and the allowed values.
    """
    if corruptions is None:
        return (), ()
    if corruptions == "all":
        names = NAMES
    elif isinstance(corruptions, (list, tuple)) and corruptions and all(isinstance(c, str) for c in corruptions):
        unknown = [c for c in corruptions if c not in NAMES]
        if unknown:
            raise ValueError(
                f"{ROOT}.corruptions: unknown corruption {', '.join(map(repr, unknown))}; use None, 'all' or a "
                f"list of {', '.join(NAMES)}"
            )
        names = tuple(n for n in NAMES if n in corruptions)
    else:
        raise ValueError(
            f"{ROOT}.corruptions must be None, 'all' or a non-empty list of corruption names "
            f"({', '.join(NAMES)}); got {corruptions!r}"
        )
    values = list(severities) if isinstance(severities, (list, tuple)) else None
    if not values or any(isinstance(s, bool) or not isinstance(s, int) or s not in SEVERITIES for s in values):
        raise ValueError(
            f"{ROOT}.corruption_severities (the severities of {ROOT}.corruptions) must be a non-empty list of "
            f"ints in 1..5; got {severities!r}"
        )
    return names, tuple(sorted(set(values)))


def check_source(source: Any) -> str:
    """Checks `train_and_evaluate.corruption_source`."""
    if source not in SOURCES:
        raise ValueError(
            f"{ROOT}.corruption_source (where {ROOT}.corruptions come from) must be one of "
            f"{', '.join(map(repr, SOURCES))}; got {source!r}"
        )
    return source


def metric_keys(names: Sequence[str], severities: Sequence[int]) -> list[str]:
    """Every result.json key a run scoring `names` x `severities` writes."""
    if not names:
        return []
    keys = [cell_key(n, s, m) for n in names for s in severities for m in ("top1", "ece")]
    keys += [severity_key(s, m) for s in severities for m in ("top1", "ece")]
    return keys + [MEAN_TOP1]


def missing_keys(result: Mapping | None, names: Sequence[str], severities: Sequence[int]) -> list[str]:
    """The keys of `metric_keys` that `result` (a result.json) lacks."""
    result = result or {}
    return [k for k in metric_keys(names, severities) if k not in result]


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)


def summarize(cells: Mapping[tuple[str, int], Mapping[str, float]]) -> dict[str, float]:
    """The flat result.json metrics from {(name, severity): {'top1': ..., 'ece': ...}} of every set scored."""
    metrics = {cell_key(n, s, m): float(v) for (n, s), values in cells.items() for m, v in values.items()}
    for severity in sorted({s for _, s in cells}):
        at = [values for (_, s), values in cells.items() if s == severity]
        for metric in ("top1", "ece"):
            metrics[severity_key(severity, metric)] = _mean(v[metric] for v in at)
    if cells:
        metrics[MEAN_TOP1] = _mean(v["top1"] for v in cells.values())
    return metrics


def is_eval_only_binding(selector: str, arg_name: str) -> bool:
    """Whether `[scope/]selector.arg_name` is one of the root's evaluation-only arguments (EVAL_ONLY_ARGS)."""
    return selector.rsplit(".", 1)[-1] == ROOT and arg_name in EVAL_ONLY_ARGS
