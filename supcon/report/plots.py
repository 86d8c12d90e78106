"""Plots for the reporter (PNG, matplotlib's Agg canvas, no pyplot state, no TensorFlow).

- `sweep_plot`: a metric vs one numeric swept macro, mean ± std over seeds, one line per setting of the other
  macros (drawn only for an axis that varies alone along some line: `sweep_axes`); a value that means "none"
  (`SPECIAL_VALUES`, e.g. POSITIVES_CAP = -1: no cap) sits at the right end, labelled, joined by a dashed segment;
- `curves_plot`: training loss vs step per stage from `metrics.jsonl` (faint per seed, solid mean);
- `embedding_plot`: 2-D PCA of the test-set embeddings of the best finished run of each row, a legend of classes.
"""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np
from matplotlib.figure import Figure

from supcon import workdir
from supcon.report.data import (
    SEED,
    Run,
    independent_macros,
    sort_key,
    value_label,
    varying_macros,
)
from supcon.report.tables import is_fraction, summarize

STAGE_ORDER = ("pretrain", "joint", "supervised", "linear")
MAX_POINTS = 2000  # embedding points drawn per panel (a fixed-seed subsample)
COLORS = [f"C{i}" for i in range(10)]
MISSING_SCORE = "n/a"
MAX_PANELS = 12  # embedding panels at most (the first rows in table order)
# Values of a numeric macro that mean "none" rather than a quantity (supcon.model.losses: positives_cap -1 = no cap):
# a sweep draws them at the right end of the axis with this label, joined to the line by a dashed segment.
SPECIAL_VALUES = {"POSITIVES_CAP": {-1: "no cap"}}
CLASS_NAMES = {
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


def _save(fig: Figure, path: str, axes: list | None = None, ncols: int = 3, markerscale: float = 1.0) -> None:
    """Writes a PNG without a software-version stamp; one legend below the panels when they have labels."""
    legend: dict[str, object] = {}
    for ax in axes or []:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)  # a point may appear in some panels (stages) only
    labels = list(legend)
    handles = [legend[k] for k in labels]
    if labels:
        fig.legend(
            handles, labels, loc="outside lower center", ncols=min(len(labels), ncols), fontsize=8,
            markerscale=markerscale,
        )
    fig.savefig(path, dpi=100, metadata={"Software": None})


def _grid(n: int, width: float = 4.2, height: float = 3.4) -> tuple[Figure, list]:
    """A figure with `n` panels, at most 3 per row."""
    ncols = max(1, min(n, 3))
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
    return fig, axes


def label_of(run: Run, macros: list[str]) -> str:
    """`A=1, B=x` for the given macros of a run ('' when there are none)."""
    return ", ".join(f"{m}={value_label(run.values.get(m))}" for m in macros)


def numeric_axes(runs: list[Run]) -> list[str]:
    """Varying macros (SEED excluded) whose values are all numbers."""

    def numeric(v: object) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    return [m for m in varying_macros(runs) if all(numeric(r.values.get(m)) for r in runs)]


def sweep_lines(runs: list[Run], axis: str) -> dict[str, dict[float, list[Run]]]:
    """The finished runs of a sweep over `axis`: {line label: {x: runs}}, one line per setting of the others.

    A line holds the runs that agree on every varying macro but `axis` and SEED, so `axis` varies alone along
    it; its label names the macros the others do not determine.
    """
    done = [r for r in runs if r.state == workdir.DONE]
    others = [m for m in varying_macros(runs) if m != axis]
    shown = independent_macros(runs, others)
    lines: dict[tuple, tuple[str, dict]] = {}
    for run in sorted(done, key=lambda r: tuple(sort_key(r.values.get(m)) for m in shown + others)):
        key = tuple(value_label(run.values.get(m)) for m in others)
        _, by_x = lines.setdefault(key, (label_of(run, shown), {}))
        by_x.setdefault(run.values[axis], []).append(run)
    return {label: by_x for label, by_x in lines.values()}


def sweep_axes(runs: list[Run]) -> list[str]:
    """The numeric axes worth a sweep plot: some line (`sweep_lines`) holds two or more of their values.

    Elsewhere the axis only changes together with other settings (e.g. paper_table3's batch size, set per
    depth and method; a learning rate set per batch size), and a line through those points would mix them.
    """
    return [a for a in numeric_axes(runs) if any(len(by_x) > 1 for by_x in sweep_lines(runs, a).values())]


def special_note(axis: str) -> str:
    """`; "no cap" (POSITIVES_CAP = -1) is drawn at the right end, dashed` for an axis with special values."""
    special = SPECIAL_VALUES.get(axis, {})
    if not special:
        return ""
    names = ", ".join(f'"{label}" ({axis} = {value})' for value, label in special.items())
    return f"; {names} is drawn at the right end, joined by a dashed segment"


def _positions(values: list, axis: str) -> tuple[dict, bool]:
    """({value: x position}, log scale?): the numbers where they are, special values after the largest."""
    special = SPECIAL_VALUES.get(axis, {})
    numbers = sorted(v for v in values if v not in special)
    log = bool(numbers) and min(numbers) > 0 and max(numbers) / min(numbers) >= 10
    where = {v: float(v) for v in numbers}
    last = numbers[-1] if numbers else 0.0
    gaps = [b - a for a, b in zip(numbers, numbers[1:], strict=False) if b > a]
    for i, value in enumerate(sorted(v for v in values if v in special), 1):
        if log:
            where[value] = last * (max(numbers) / min(numbers)) ** (0.15 * i)
        else:
            where[value] = last + i * (min(gaps) if gaps else 1.0)  # one (smallest) step after the largest
    return where, log


def _line_points(by_x: dict, metric: str, scale: float) -> list[tuple]:
    """(x value, mean, std) of each x of a line with a finished value of `metric`, sorted by x."""
    out = []
    for x in sorted(by_x):
        mean, std, n = summarize([v for r in by_x[x] if (v := r.metric(metric)) is not None])
        if n:
            out.append((x, scale * mean, scale * (std or 0.0)))
    return out


def sweep_plot(runs: list[Run], axis: str, metrics: list[str], path: str) -> None:
    """Plots each metric against `axis` with std error bars; one line per setting of the other macros.

    Lines as `sweep_lines`. The x axis is logarithmic when the values span a factor of 10 or more; special
    values (`SPECIAL_VALUES`) sit after the largest, labelled, joined to their line by a dashed segment.
    """
    lines = sweep_lines(runs, axis)
    special = SPECIAL_VALUES.get(axis, {})
    seeds = any(SEED in r.values for r in runs)
    fig, axes = _grid(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        scale = 100.0 if is_fraction(metric) else 1.0
        where, log = _positions(sorted({x for by_x in lines.values() for x in by_x}), axis)
        values = sorted(where, key=where.get)  # special values last
        for i, (label, by_x) in enumerate(lines.items()):
            color = COLORS[i % 10]
            drawn = _line_points(by_x, metric, scale)
            plain = [p for p in drawn if p[0] not in special]
            odd = [p for p in drawn if p[0] in special]
            if plain:
                ax.errorbar([where[x] for x, _, _ in plain], [y for _, y, _ in plain],
                            yerr=[e for _, _, e in plain], marker="o", capsize=3, color=color, label=label or None)
            for x, y, err in odd:
                ax.errorbar([where[x]], [y], yerr=[err], marker="s", capsize=3, color=color, linestyle="none",
                            label=None if plain else label or None)
                if plain:
                    ax.plot([where[plain[-1][0]], where[x]], [plain[-1][1], y], linestyle="--", color=color)
        if log:
            ax.set_xscale("log")
        ax.set_xticks([where[v] for v in values], [special.get(v, value_label(v)) for v in values])
        ax.minorticks_off()
        ax.set_xlabel(axis)
        ax.set_ylabel(metric + (" (%)" if scale == 100.0 else ""))
        ax.set_title(f"{metric} vs {axis}" + (f" (mean ± std over {SEED})" if seeds else ""), fontsize=9)
        ax.grid(alpha=0.3)
    _save(fig, path, axes)


def _records(run: Run) -> list[dict]:
    """The run's metrics.jsonl records (empty for an absent run)."""
    if run.path is None:
        return []
    return list(workdir.read_jsonl(os.path.join(run.path, workdir.METRICS)))


def _curve_series(runs: list[Run], groups: list[str]) -> dict:
    """{panel: {group label: [(steps, values), ...]}} for train losses per stage and eval/top1."""
    panels: dict[str, dict[str, list]] = {}
    for run in runs:
        series: dict[str, tuple[list, list]] = {}
        for rec in _records(run):
            step = rec.get("step", 0)
            if isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step):
                continue  # a record of another version, or hand-edited: not plotted
            if rec.get("kind") == "train" and isinstance(rec.get("loss"), int | float):
                key, value = f"{rec.get('stage', 'train')} loss", rec["loss"]
            elif rec.get("kind") == "eval" and isinstance(rec.get("eval/top1"), int | float):
                key, value = "eval/top1 (%)", 100.0 * rec["eval/top1"]
            else:
                continue
            steps, values = series.setdefault(key, ([], []))
            steps.append(int(step))
            values.append(float(value))
        for key, sv in series.items():
            panels.setdefault(key, {}).setdefault(label_of(run, groups), []).append(sv)
    return panels


def _panel_order(name: str) -> tuple:
    stage = name.split(" ")[0]
    rank = STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)
    return (name.startswith("eval"), rank, name)


def curves_plot(runs: list[Run], path: str) -> bool:
    """Training loss vs step per stage (and eval/top1 when some run was evaluated at two steps or more).

    One colour per point (SEED grouped out): each seed faint, their mean at shared steps solid.

    Returns:
      False, writing nothing, when no run has training records.
    """
    groups = independent_macros(runs, varying_macros(runs))
    panels = _curve_series(runs, groups)
    panels = {
        k: v
        for k, v in panels.items()
        # eval/top1 only when some run was evaluated at two or more steps: scoring a finished run again (eval mode,
        # e.g. on corrupted test sets) appends a second record at the same step, which is no curve.
        if not k.startswith("eval") or any(len(set(s)) > 1 for ss in v.values() for s, _ in ss)
    }
    if not panels:
        return False
    names = sorted(panels, key=_panel_order)
    labels = sorted({g for p in panels.values() for g in p})
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names, strict=True):
        for label, seeds in sorted(panels[name].items()):
            color = COLORS[labels.index(label) % 10]
            by_step: dict[int, list[float]] = {}
            for steps, values in seeds:
                ax.plot(steps, values, color=color, alpha=0.3, linewidth=0.8)
                for s, v in zip(steps, values, strict=True):
                    by_step.setdefault(s, []).append(v)
            shared = sorted(s for s, vs in by_step.items() if len(vs) == len(seeds))
            ax.plot(
                shared,
                [float(np.mean(by_step[s])) for s in shared],
                color=color,
                linewidth=1.6,
                label=label or None,
            )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    _save(fig, path, axes)
    return True


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Projects [N, D] points on their first two principal components (numpy SVD) -> [N, 2]."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must be [N, D] with N >= 2; got shape {x.shape}")
    centered = x - x.mean(axis=0, keepdims=True)  # [N, D]
    _, _, vt = np.linalg.svd(centered, full_matrices=False)  # vt: [min(N, D), D]
    out = centered @ vt[:2].T  # [N, <=2]
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))  # [N, 2] even when D == 1


def best_runs(runs: list[Run], rows: list[str], metric: str) -> list[tuple[str, Run]]:
    """The finished run with embeddings and the highest `metric`, per row label (sorted rows)."""
    best: dict[str, tuple[tuple, Run]] = {}
    order: dict[str, tuple] = {}
    for run in runs:
        if run.state != workdir.DONE or not os.path.exists(
            os.path.join(run.path, workdir.EMBEDDINGS)
        ):
            continue
        label = " / ".join(value_label(run.values.get(m)) for m in rows) or "all"
        order[label] = tuple(sort_key(run.values.get(m)) for m in rows)
        score = run.metric(metric)
        key = (score if score is not None else -math.inf, run.slug)  # ties: the larger slug
        if label not in best or key > best[label][0]:
            best[label] = (key, run)
    return [(label, best[label][1]) for label in sorted(best, key=order.get)]


def class_legend(labels: np.ndarray, dataset: str | None) -> list[tuple[int, np.ndarray, str]]:
    """(colour index, mask, legend label) per colour of a scatter coloured by class (colour = class mod 10).

    With 10 classes or fewer, each colour is one class, named when the dataset's names are known
    (`CLASS_NAMES`); with more, a colour stands for the classes equal mod 10 (`classes 3, 13, 23, ...`).
    """
    names = CLASS_NAMES.get(dataset or "", ())
    out = []
    for color in range(10):
        mask = labels % 10 == color
        present = sorted({int(c) for c in labels[mask]})
        if not present:
            continue
        if len(present) == 1:
            c = present[0]
            text = f"{c}: {names[c]}" if c < len(names) else f"class {c}"
        else:
            text = "classes " + ", ".join(str(c) for c in present[:3]) + (", ..." if len(present) > 3 else "")
        out.append((color, mask, text))
    return out


def embedding_plot(chosen: list[tuple[str, Run]], metric: str, path: str) -> list[str]:
    """Scatters the PCA of each chosen run's test embeddings, coloured by label, with one legend of classes.

    Returns:
      One problem line per run whose embeddings could not be read (those panels say so).
    """
    problems = []
    fig, axes = _grid(len(chosen), width=3.8, height=3.6)
    for ax, (label, run) in zip(axes, chosen, strict=True):
        try:
            with np.load(os.path.join(run.path, workdir.EMBEDDINGS)) as data:
                emb, lab = np.asarray(data["embeddings"], np.float64), np.asarray(data["labels"])
            if lab.shape != emb.shape[:1]:
                raise ValueError(f"labels {lab.shape} do not match embeddings {emb.shape}")
            if len(emb) > MAX_POINTS:
                keep = np.sort(np.random.default_rng(0).choice(len(emb), MAX_POINTS, replace=False))
                emb, lab = emb[keep], lab[keep]
            xy = pca_2d(emb)  # [N, 2]
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
            problems.append(f"{run.slug}: embeddings unreadable ({type(err).__name__}: {err})")
            ax.text(0.5, 0.5, "embeddings unreadable", ha="center", transform=ax.transAxes)
            continue
        dataset = (run.env.get("scale") or {}).get("dataset")
        for color, mask, text in class_legend(lab.astype(int), dataset if isinstance(dataset, str) else None):
            ax.scatter(xy[mask, 0], xy[mask, 1], color=COLORS[color], s=3, label=text)
        score = run.metric(metric)
        if score is None:
            shown = MISSING_SCORE
        else:
            shown = f"{100 * score:.1f}%" if is_fraction(metric) else f"{score:.4g}"
        ax.set_title(f"{label}\n{metric} {shown}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    _save(fig, path, axes, ncols=5, markerscale=4.0)
    return problems
