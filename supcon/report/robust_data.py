"""Robustness numbers of runs for the reporter: corruption errors, mCE and relative mCE against a baseline, and
the reliability diagrams of calibration.json pooled over seeds. NumPy only (no TensorFlow, no pandas).

The baseline (`report.robustness['baseline']`, see `supcon.report.spec`) is either AlexNet's published ImageNet-C
errors (`supcon.robust.metrics.ALEXNET_IMAGENET_C_ERRORS`, means over severities 1-5, and its clean error), or a row
of the grid: within each setting of the report's other row and column macros, the finished runs matching the
selector, their top-1 errors averaged over seeds per corruption x severity (and on the clean test set). Every
finished run with corruption results then gets, computed against its setting's baseline (x 100):

    robust/mce           mean over corruptions of sum_s E_{s,c} / sum_s E^base_{s,c}
    robust/relative_mce  mean over corruptions of sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} - E^base_clean)

so tables and claims summarise them over seeds like any result.json metric.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np

from supcon import workdir
from supcon.report.claims import format_selector, matches
from supcon.report.data import Run, group_runs, value_label
from supcon.report.metrics import (
    CALIBRATION,
    CLEAN,
    CLEAN_TOP1,
    MCE,
    RELATIVE_MCE,
    SEVERITIES,
    TOP1,
    parse_corruption_key,
)
from supcon.report.spec import ALEXNET
from supcon.robust import metrics as robustness

ALEXNET_LABEL = "AlexNet (its published ImageNet-C errors, Hendrycks & Dietterich 2019)"


@dataclasses.dataclass(frozen=True)
class Baseline:
    """The errors that normalise corruption errors.

    Attributes:
      label: what it is, for people ('AlexNet (...)' or 'METHOD=cross_entropy, DEPTH=50').
      errors: {corruption: {severity: top-1 error}} (a grid row), or {corruption: mean error over 1-5} (AlexNet).
      clean_error: the clean top-1 error, None when unknown.
      runs: the finished grid runs averaged (0 for AlexNet).
    """

    label: str
    errors: dict
    clean_error: float | None
    runs: int = 0


@dataclasses.dataclass(frozen=True)
class Scores:
    """One run's robustness against its baseline: mCE, relative mCE (None when undefined), CE_c per corruption."""

    mce: float
    relative_mce: float | None
    per_corruption: dict[str, float]


@dataclasses.dataclass
class Robustness:
    """The runs with robust/mce and robust/relative_mce added, their scores by slug, the baseline of each
    setting ('' for the whole grid; None when the setting has no finished baseline run) and problems."""

    runs: list[Run]
    scores: dict[str, Scores]
    baselines: list[tuple[str, Baseline | None]]
    notes: list[str]


def corruption_table(run: Run, what: str = TOP1) -> dict[str, dict[int, float]]:
    """{corruption: {severity: value}} of `what` ('top1' or 'ece') from a run's result, in CORRUPTION_NAMES order."""
    table: dict[str, dict[int, float]] = {}
    for key in run.result:
        parsed = parse_corruption_key(key)
        value = run.metric(key)
        if parsed and parsed[2] == what and value is not None:
            table.setdefault(parsed[0], {})[parsed[1]] = value
    return table


def corruption_errors(run: Run) -> dict[str, dict[int, float]]:
    """{corruption: {severity: top-1 error}} of a run (1 - top-1)."""
    return {c: {s: 1.0 - v for s, v in by.items()} for c, by in corruption_table(run).items()}


def alexnet_baseline() -> Baseline:
    """AlexNet's published ImageNet-C errors (means over severities 1-5) and its clean error."""
    return Baseline(
        ALEXNET_LABEL, dict(robustness.ALEXNET_IMAGENET_C_ERRORS), robustness.ALEXNET_CLEAN_ERROR
    )


def grid_baseline(runs: Sequence[Run], label: str) -> Baseline | None:
    """The mean errors over the finished runs given (one row, its seeds); None when none has corruption results."""
    done = [r for r in runs if r.state == workdir.DONE and corruption_table(r)]
    if not done:
        return None
    cells: dict[str, dict[int, list[float]]] = {}
    for run in done:
        for name, by in corruption_errors(run).items():
            for severity, error in by.items():
                cells.setdefault(name, {}).setdefault(severity, []).append(error)
    errors = {c: {s: float(np.mean(v)) for s, v in sorted(by.items())} for c, by in cells.items()}
    clean = [1.0 - v for r in done if (v := r.metric(CLEAN_TOP1)) is not None]
    return Baseline(label, errors, float(np.mean(clean)) if clean else None, len(done))


def _paired_baseline(errors: dict, baseline: Baseline) -> dict:
    """The baseline's entries for the run's corruptions, cut to the run's severities.

    Raises:
      ValueError: the baseline lacks a corruption or severity of the run, or (AlexNet, whose published errors
        are means over 1-5) the run was not scored at every severity 1-5.
    """
    out = {}
    for name, by in errors.items():
        if name not in baseline.errors:
            raise ValueError(f"the baseline has no {name}")
        base = baseline.errors[name]
        if not isinstance(base, dict):
            if sorted(by) != list(SEVERITIES):
                have = ", ".join(map(str, sorted(by)))
                raise ValueError(
                    f"{name} at severities {have}: AlexNet's published errors are means over severities 1-5"
                )
            out[name] = base
            continue
        missing = sorted(set(by) - set(base))
        if missing:
            raise ValueError(
                f"the baseline has no {name} at severity {', '.join(map(str, missing))}"
            )
        out[name] = {s: base[s] for s in by}
    return out


def score(run: Run, baseline: Baseline) -> Scores:
    """mCE, relative mCE and CE_c of one finished run against `baseline` (`supcon.robust.metrics`).

    Raises:
      ValueError: the run has no corruption results, or they do not pair with the baseline's (the message says
        which cell).
    """
    errors = corruption_errors(run)
    if not errors:
        raise ValueError("no corruption/<name>/<severity>/top1 in result.json")
    base = _paired_baseline(errors, baseline)
    per = robustness.corruption_errors(errors, base)
    top1 = run.metric(CLEAN_TOP1)
    relative = None
    if top1 is not None and baseline.clean_error is not None:
        try:
            relative = robustness.relative_mean_corruption_error(
                errors, 1.0 - top1, base, baseline.clean_error
            )
        except ValueError:  # the baseline's corrupted and clean errors are equal: no ratio
            relative = None
    return Scores(float(np.mean(list(per.values()))), relative, per)


def _with_scores(run: Run, scores: Scores) -> Run:
    result = dict(run.result, **{MCE: scores.mce})
    if scores.relative_mce is not None and math.isfinite(scores.relative_mce):
        result[RELATIVE_MCE] = scores.relative_mce
    return dataclasses.replace(run, result=result)


def _settings(
    runs: list[Run], selector: dict, within: Sequence[str]
) -> list[tuple[str, list[Run]]]:
    """Runs grouped by the `within` macros that vary and that the baseline selector does not name."""
    macros = [
        m
        for m in dict.fromkeys(within)
        if m not in selector and len({value_label(r.values.get(m)) for r in runs}) > 1
    ]
    return [
        (", ".join(f"{m}={v}" for m, v in zip(macros, key, strict=True)), members)
        for key, members in group_runs(runs, macros)
    ]


def derive(runs: Sequence[Run], robust: dict, within: Sequence[str]) -> Robustness:
    """Scores every finished run with corruption results against its setting's baseline.

    Args:
      runs: the report's runs (unfinished ones pass through unchanged).
      robust: the parsed `report.robustness` (`supcon.report.spec`).
      within: the report's row and column macros (a grid baseline is chosen within each setting of those it does
        not name).
    """
    runs = list(runs)
    selector = robust["baseline"]
    if selector == ALEXNET:
        settings = [("", runs, alexnet_baseline())]
    else:
        settings = []
        for where, members in _settings(runs, selector, within):
            label = ", ".join(filter(None, [format_selector(selector), where]))
            base = grid_baseline([r for r in members if matches(r.values, selector)], label)
            settings.append((where, members, base))
    scores: dict[str, Scores] = {}
    notes: list[str] = []
    scored: dict[int, Run] = {}
    for where, members, base in settings:
        for run in members:
            if run.state != workdir.DONE or not corruption_table(run):
                continue
            if base is None:
                notes.append(
                    f"`{run.slug}`: no finished baseline run ({format_selector(selector)}"
                    f"{', ' + where if where else ''}) has corruption results"
                )
                continue
            try:
                scores[run.slug] = score(run, base)
            except ValueError as err:
                notes.append(f"`{run.slug}`: no mCE ({err})")
                continue
            scored[id(run)] = _with_scores(run, scores[run.slug])
    out = [scored.get(id(r), r) for r in runs]
    return Robustness(out, scores, [(w, b) for w, _, b in settings], notes)


# -------------------------------------------------------------------------------------------------------------
# calibration.json


def _diagram(entry: object) -> robustness.ReliabilityDiagram:
    """One calibration.json entry as arrays (null -> NaN), checked for matching lengths."""
    if not isinstance(entry, dict):
        raise ValueError(f"an entry is a {type(entry).__name__}, not an object")
    try:
        edges = np.asarray(entry["bin_edges"], np.float64)
        counts = np.asarray(entry["counts"], np.float64)
        fields = [
            np.asarray([np.nan if v is None else v for v in entry[k]], np.float64)
            for k in ("accuracy", "confidence")
        ]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"an entry lacks or mangles {err}") from None
    m = counts.shape[0] if counts.ndim == 1 else -1
    if m < 1 or edges.shape != (m + 1,) or any(f.shape != (m,) for f in fields):
        raise ValueError("bin_edges must have one more entry than counts, accuracy and confidence")
    return robustness.ReliabilityDiagram(edges, counts, *fields)


def calibration_key(severity: int) -> str:
    """calibration.json's key of a test set: 'clean' (0) or 'severity_<s>'."""
    return CLEAN if severity == 0 else f"severity_{severity}"


def pooled_diagram(
    runs: Sequence[Run], severity: int
) -> tuple[robustness.ReliabilityDiagram | None, int, list[str]]:
    """The reliability diagram of one test set pooled over the finished runs' calibration.json files.

    Bins are summed: counts add up, accuracy and confidence are count-weighted means, so the pooled ECE is the
    ECE of all the runs' predictions together.

    Returns:
      (the diagram or None when no run has it, the number of runs pooled, problems naming the run).
    """
    key = calibration_key(severity)
    pooled, used, problems = None, 0, []
    for run in runs:
        if run.state != workdir.DONE or run.path is None:
            continue
        content, why = workdir.read_object(os.path.join(run.path, CALIBRATION))
        if why:
            problems.append(f"`{run.slug}`: {why}")
        if not content or key not in content:
            continue
        try:
            diagram = _diagram(content[key])
        except ValueError as err:
            problems.append(f"`{run.slug}`: {CALIBRATION} [{key!r}]: {err}")
            continue
        if pooled is not None and not np.allclose(pooled[0], diagram.bin_edges):
            problems.append(
                f"`{run.slug}`: {CALIBRATION} [{key!r}] has other bin edges; not pooled"
            )
            continue
        weights = (
            diagram.counts,
            np.nan_to_num(diagram.accuracy) * diagram.counts,
            np.nan_to_num(diagram.confidence) * diagram.counts,
        )
        if pooled is None:
            pooled = [diagram.bin_edges, *weights]
        else:
            pooled[1:] = [a + b for a, b in zip(pooled[1:], weights, strict=True)]
        used += 1
    if pooled is None or not pooled[1].sum():
        return None, used, problems
    edges, counts, correct, confident = pooled
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy, confidence = correct / counts, confident / counts
    return robustness.ReliabilityDiagram(edges, counts, accuracy, confidence), used, problems
