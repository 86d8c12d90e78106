"""A report's run records: the small files of every run it read, kept beside it in `reports/<recipe>/runs/<slug>/`.

A record is a run directory without the heavy parts: point.json, status.json, result.json, env.json and
calibration.json as the run wrote them, its config.gin gzipped (config.gin.gz: a fifth of the bytes), its
metrics.jsonl with the training lines thinned to CURVE_POINTS per stage (every evaluation line kept), and its
test-set embeddings as the 2-D PCA of at most `plots.MAX_POINTS` of them (what the embeddings plot draws). No
checkpoint, export or event file. The reporter builds a report from these records alone, so a committed report can
be rebuilt, audited and continued on another machine (docs/reports.md). A record in a larger form (an older
version's, or one copied from a smaller report) is rewritten in this one when its report is built (`compact`).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import zipfile

import numpy as np

from supcon import workdir
from supcon.report import data as report_data
from supcon.report import plots as report_plots

RECORDS = workdir.RECORDS_DIR  # the records' folder inside a report's folder
CURVE_POINTS = 100  # training lines of metrics.jsonl kept per stage, evenly spaced (the last one always)
FULL_CURVES_UP_TO = 10  # runs in a report that keep CURVE_POINTS; a larger grid keeps fewer (curve_points)
MIN_CURVE_POINTS = 25
SIGNIFICANT = 6  # digits kept of a logged float
COPIED = (workdir.POINT, workdir.STATUS, workdir.RESULT, workdir.ENV, workdir.CALIBRATION, workdir.PATCH)
RECORDED_STATES = (workdir.DONE, workdir.FAILED)  # a running or interrupted point is recorded once it ends


def records_dir(report_dir: str) -> str:
    """Where the records of the report in `report_dir` live."""
    return os.path.join(report_dir, RECORDS)


def _rounded(value):
    if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
        return float(f"{value:.{SIGNIFICANT}g}")
    return value


def curve_points(runs: int) -> int:
    """Training lines kept per stage in each record of a report of `runs` runs: CURVE_POINTS up to
    FULL_CURVES_UP_TO runs, then fewer in proportion (at least MIN_CURVE_POINTS), so a large grid's records stay
    under 1 MB."""
    if runs <= FULL_CURVES_UP_TO:
        return CURVE_POINTS
    return max(MIN_CURVE_POINTS, CURVE_POINTS * FULL_CURVES_UP_TO // runs)


def thin_curves(lines: list[dict], points: int = CURVE_POINTS) -> list[dict]:
    """metrics.jsonl lines with at most `points` training lines per stage (evenly spaced, first and last
    kept) and every other line; floats rounded to SIGNIFICANT digits."""
    by_stage: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        if line.get("kind") == "train":
            by_stage.setdefault(str(line.get("stage")), []).append(i)
    keep = set(range(len(lines))) - {i for idx in by_stage.values() for i in idx}
    for idx in by_stage.values():
        if len(idx) <= points:
            keep.update(idx)
        else:
            picks = np.unique(np.round(np.linspace(0, len(idx) - 1, points)).astype(int))
            keep.update(idx[p] for p in picks)
    return [{k: _rounded(v) for k, v in lines[i].items()} for i in sorted(keep)]


def _embeddings_2d(run_dir: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The 2-D PCA of at most MAX_POINTS test embeddings (the plot's sample) and their labels, or None."""
    path = os.path.join(run_dir, workdir.EMBEDDINGS)
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path) as data:
            emb, lab = np.asarray(data["embeddings"], np.float64), np.asarray(data["labels"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if lab.shape != emb.shape[:1] or emb.ndim != 2:
        return None
    if emb.shape[1] == 2 and len(emb) <= report_plots.MAX_POINTS:  # a record's: already the plot's projection
        return emb.astype(np.float16), _small_labels(lab)
    if len(emb) > report_plots.MAX_POINTS:
        keep = np.sort(np.random.default_rng(0).choice(len(emb), report_plots.MAX_POINTS, replace=False))
        emb, lab = emb[keep], lab[keep]
    # float16 positions (3 significant digits: far finer than a plotted marker) and the smallest label type
    return report_plots.pca_2d(emb).astype(np.float16), _small_labels(lab)


def _small_labels(labels: np.ndarray) -> np.ndarray:
    small = labels.size and labels.min() >= 0 and labels.max() < 256
    return labels.astype(np.uint8) if small else labels.astype(np.int32)


def write_record(run_dir: str, record: str, points: int = CURVE_POINTS) -> None:
    """Writes the record of one run directory into `record` (replaced whole, by renames: never half-written),
    with at most `points` training lines per stage of its curves."""
    parent = os.path.dirname(os.path.abspath(record))
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".record-", dir=parent)
    try:
        for name in COPIED:
            if os.path.isfile(os.path.join(run_dir, name)):
                shutil.copyfile(os.path.join(run_dir, name), os.path.join(stage, name))
        config = os.path.join(run_dir, workdir.CONFIG)
        if os.path.isfile(config):  # gzipped without a name or time in its header: the same bytes every time
            with open(config, "rb") as src, open(os.path.join(stage, workdir.CONFIG_GZ), "wb") as raw:
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
                    shutil.copyfileobj(src, out)
        elif os.path.isfile(os.path.join(run_dir, workdir.CONFIG_GZ)):  # a record recorded again
            shutil.copyfile(os.path.join(run_dir, workdir.CONFIG_GZ), os.path.join(stage, workdir.CONFIG_GZ))
        point = workdir.read_json(os.path.join(run_dir, workdir.POINT))
        if isinstance(point, dict):  # no machine paths in a committed record (a damaged one stays verbatim)
            workdir.write_json_atomic(os.path.join(stage, workdir.POINT), workdir.portable_point(point, os.getcwd()))
        metrics = os.path.join(run_dir, workdir.METRICS)
        lines, bad = workdir.read_jsonl_checked(metrics)
        if bad:  # kept verbatim: the report names the damaged lines
            shutil.copyfile(metrics, os.path.join(stage, workdir.METRICS))
        elif lines:
            with open(os.path.join(stage, workdir.METRICS), "w") as f:
                f.writelines(json.dumps(line, sort_keys=True) + "\n" for line in thin_curves(lines, points))
        found = _embeddings_2d(run_dir)
        if found is not None:
            with open(os.path.join(stage, workdir.EMBEDDINGS), "wb") as f:
                np.savez_compressed(f, embeddings=found[0], labels=found[1])
        elif os.path.isfile(os.path.join(run_dir, workdir.EMBEDDINGS)):  # unreadable: the report says so
            shutil.copyfile(os.path.join(run_dir, workdir.EMBEDDINGS), os.path.join(stage, workdir.EMBEDDINGS))
        old = None
        if os.path.exists(record):
            old = tempfile.mkdtemp(prefix=".old-record-", dir=parent)
            os.replace(record, os.path.join(old, "record"))
        os.replace(stage, record)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def sync(runs: list, report_dir: str) -> list[str]:
    """Records every finished or failed run of `runs` (supcon.report.data.Run) that has no up-to-date record
    beside the report in `report_dir`; returns the slugs written. Records of points not among `runs` stay: they
    may have finished on another machine."""
    written, points = [], curve_points(len(runs))
    for run in runs:
        if run.path is None or run.state not in RECORDED_STATES:
            continue
        record = os.path.join(records_dir(report_dir), run.slug)
        if os.path.abspath(record) == os.path.abspath(run.path) or (
            os.path.isdir(record) and report_data.same_run(run.path, record)
        ):
            continue
        write_record(run.path, record, points)
        written.append(run.slug)
    return written


def _loose(record: str, points: int) -> bool:
    """Whether a record holds more than its compact form (an older record, or one copied from a smaller report):
    config.gin not gzipped, embeddings not float16 2-D, or more than `points` training lines in a stage."""
    if os.path.isfile(os.path.join(record, workdir.CONFIG)):
        return True
    try:
        with np.load(os.path.join(record, workdir.EMBEDDINGS)) as found:
            emb, lab = found["embeddings"], found["labels"]
            if emb.dtype != np.float16 or emb.ndim != 2 or emb.shape[1] != 2 or lab.dtype != _small_labels(lab).dtype:
                return True
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        pass  # no embeddings, or unreadable ones: the report names them; nothing to compact
    lines, bad = workdir.read_jsonl_checked(os.path.join(record, workdir.METRICS))
    return not bad and len(thin_curves(lines, points)) < len(lines)  # some stage holds more than `points`


def compact(report_dir: str) -> list[str]:
    """Rewrites in the compact form (`write_record`, in place, by renames) every finished or failed record
    beside the report in `report_dir` that holds more (`_loose`), with `curve_points` of the number of records;
    returns the slugs rewritten. Records copied from another report (grid.reuse_from) or written by an older
    version keep only what a record written now would: their results, settings and evaluation lines unchanged."""
    folder = records_dir(report_dir)
    if not os.path.isdir(folder):
        return []
    slugs = sorted(name for name in os.listdir(folder)
                   if not name.startswith(".") and os.path.isfile(os.path.join(folder, name, workdir.POINT)))
    points, written = curve_points(len(slugs)), []
    for slug in slugs:
        record = os.path.join(folder, slug)
        if workdir.point_status(record) in RECORDED_STATES and _loose(record, points):
            write_record(record, record, points)
            written.append(slug)
    return written


def size(report_dir: str) -> int:
    """Bytes of a report's records."""
    total = 0
    for folder, _, files in os.walk(records_dir(report_dir)):
        total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total
