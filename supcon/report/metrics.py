"""The metric names a report, a claim or a paper number may name, and the robustness keys of result.json.

Light (no NumPy, pandas or TensorFlow): the runner checks recipes against these names when it loads them.

A finished run's result.json holds `workdir.RESULT_METRICS`, and, when it was evaluated on corrupted test sets
(`train_and_evaluate.corruptions`), robustness keys (accuracies are fractions in [0, 1], ECE with 15 bins):

    eval/ece                               clean ECE
    corruption/<name>/<severity>/top1      one corruption (supcon.robust.corrupt.CORRUPTIONS) at severity 1..5
    corruption/<name>/<severity>/ece
    corruption/severity_<s>/top1           mean over the corruptions at severity s
    corruption/severity_<s>/ece
    corruption/mean/top1                   mean over corruptions and severities

and a `calibration.json` beside it (reliability-diagram bins per test set: "clean", "severity_1", ...).

The reporter derives per-run metrics that need a baseline model (`report.robustness`), added to each finished
run's result before tables and claims read it: `robust/mce` and `robust/relative_mce` (x 100, Hendrycks &
Dietterich 2019; `supcon.robust.metrics`).

Claims along severity use the pseudo-axis `SEVERITY` (`by_severity`): each run stands once per severity, 0 being
the clean test set, with `eval/top1` and `eval/ece` holding that severity's values.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from supcon import workdir
from supcon.report.data import SKIPPED, Run
from supcon.robust import spec as corruption_spec

CALIBRATION = workdir.CALIBRATION  # the run directory's reliability-diagram file (written by the trainer)
CLEAN = "clean"  # calibration.json's key of the clean test set
SEVERITIES = corruption_spec.SEVERITIES
# The 15 ImageNet-C corruptions in the paper's order (noise, blur, weather, digital), as supcon.robust.corrupt
# names them (that module imports TensorFlow; the reporter must not).
CORRUPTION_NAMES = corruption_spec.NAMES
TOP1, ECE = "top1", "ece"
CLEAN_TOP1, CLEAN_ECE = "eval/top1", "eval/ece"
MEAN_TOP1 = corruption_spec.MEAN_TOP1
MCE, RELATIVE_MCE = "robust/mce", "robust/relative_mce"
DERIVED = (MCE, RELATIVE_MCE)  # computed by the reporter against report.robustness's baseline
SEVERITY = "SEVERITY"  # the claims' pseudo-axis along severities (0 = clean)
SEVERITY_METRICS = (CLEAN_TOP1, CLEAN_ECE)  # the metrics a claim along SEVERITY may name


def is_fraction(metric: str) -> bool:
    """Whether a metric is an accuracy in [0, 1] (shown in percent, its differences in percentage points)."""
    name = metric.rsplit("/", 1)[-1]
    return name.startswith("top") or "acc" in name


_CORRUPTION_RE = re.compile(
    r"^corruption/(?:(?P<name>[a-z_]+)/(?P<severity>[1-5])|severity_(?P<level>[1-5]))/(?P<what>top1|ece)$"
)
METRIC_FORMS = (
    "eval/ece",
    "corruption/<name>/<1-5>/top1 or /ece",
    "corruption/severity_<1-5>/top1 or /ece",
    MEAN_TOP1,
    *DERIVED,
)


corruption_key = corruption_spec.cell_key  # 'corruption/gaussian_noise/3/top1'


def severity_key(severity: int, what: str) -> str:
    """The metric `what` ('top1' or 'ece') at one severity; severity 0 is the clean test set."""
    if severity == 0:
        return CLEAN_TOP1 if what == TOP1 else CLEAN_ECE
    return corruption_spec.severity_key(severity, what)


def parse_corruption_key(key: str) -> tuple[str, int, str] | None:
    """'corruption/fog/2/ece' -> ('fog', 2, 'ece'); None for any other key (severity means included)."""
    match = _CORRUPTION_RE.match(key)
    if not match or match["name"] is None or match["name"] not in CORRUPTION_NAMES:
        return None
    return match["name"], int(match["severity"]), match["what"]


def is_metric(name: str) -> bool:
    """Whether a finished run's result (with the reporter's derived metrics) can hold `name`."""
    if name in workdir.RESULT_METRICS or name in (CLEAN_ECE, MEAN_TOP1, *DERIVED):
        return True
    match = _CORRUPTION_RE.match(name)
    return bool(match) and (match["name"] is None or match["name"] in CORRUPTION_NAMES)


def known_metrics() -> str:
    """The names `is_metric` accepts, for error messages."""
    return ", ".join((*workdir.RESULT_METRICS, *METRIC_FORMS))


def has_corruptions(run: Run) -> bool:
    """Whether a run's result holds any corruption/* key."""
    return any(str(k).startswith("corruption/") for k in run.result)


def severities_of(runs: Sequence[Run]) -> list[int]:
    """The severities some finished run reports a mean top-1 or ECE for, with 0 (clean) first."""
    found = {
        s
        for r in runs
        for s in SEVERITIES
        if severity_key(s, TOP1) in r.result or severity_key(s, ECE) in r.result
    }
    return [0, *sorted(found)]


def by_severity(runs: Sequence[Run]) -> list[Run]:
    """Each run once per severity (0 = clean, then those some run reports), for claims along SEVERITY.

    The copy for severity s has `SEVERITY: s` among its values, and `eval/top1` / `eval/ece` replaced by the
    mean over corruptions at s (absent when the run lacks them). Unfinished runs are copied too (as planned).
    """
    levels = severities_of([r for r in runs if r.state == workdir.DONE])
    out = []
    for run in runs:
        if run.state == SKIPPED:
            continue
        for s in levels:
            result = {k: v for k, v in run.result.items() if k not in SEVERITY_METRICS}
            for what in (TOP1, ECE):
                if severity_key(s, what) in run.result:
                    result[severity_key(0, what)] = run.result[severity_key(s, what)]
            values = dict(run.values, **{SEVERITY: s})
            out.append(
                dataclasses.replace(run, slug=f"{run.slug}@{s}", values=values, result=result)
            )
    return out
