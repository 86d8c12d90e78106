"""The header of a report: title, recipe comments, the scale of the runs, code version, wall time.

So that nobody mistakes a CPU digits run for a CIFAR-10 result, every report opens with one plain sentence
on the scale (dataset, image size, encoder, epochs, batch, hardware, from `env.json`), the git SHA(s), the
package versions, the count of points done/failed/missing and the training wall time; when some runs came
from uncommitted code, which ones, with links to their patches in the run records beside the report; and which
points were copied from another recipe's runs or run records (`grid.reuse_from`); and, when the runs did not all
compute in the same precision (bfloat16 on some CPUs, float32 on others), how many did which. No TensorFlow.
"""

from __future__ import annotations

from supcon import workdir
from supcon.report.data import MISSING, SKIPPED, Run, sort_key, value_label
from supcon.report.tables import format_paper, markdown_table, paper_label

DATASET_NAMES = {
    "fashion_mnist": "Fashion-MNIST",
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "imagenet2012": "ImageNet",
    "digits": "scikit-learn digits",
}
PAPER_DATASETS = ("cifar10", "cifar100", "imagenet2012")
SCALE_FIELDS = (
    ("dataset", "dataset"),
    ("train_examples", "train examples"),
    ("image_shape", "image shape"),
    ("encoder", "encoder"),
    ("pretrain_epochs", "pretrain epochs"),
    ("linear_epochs", "linear epochs"),
    ("global_batch_size", "global batch size"),
    ("hardware", "hardware"),
)


def format_seconds(seconds: float) -> str:
    """`45 s`, `12 min 05 s` or `3 h 02 min`."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _scale_value(key: str, value: object) -> str:
    if key == "image_shape" and isinstance(value, list):
        return "x".join(str(v) for v in value)
    return value_label(value)


def scale_values(runs: list[Run]) -> dict[str, list[str]]:
    """Each env.json scale field (plus strategy) -> its distinct values over the runs, in value order
    (`data.sort_key`: numbers numerically, batch 64 before 1024)."""
    out: dict[str, dict[str, object]] = {}  # key -> {label: a value with that label}
    for run in runs:
        scale = run.env.get("scale") or {}
        for key, _ in SCALE_FIELDS:
            if key in scale:
                out.setdefault(key, {})[_scale_value(key, scale[key])] = scale[key]
        if "strategy" in run.env:
            label = f"{run.env['strategy']} ({run.env.get('replicas', '?')} replicas)"
            out.setdefault("strategy", {})[label] = label
    return {k: sorted(v, key=lambda label: sort_key(v[label])) for k, v in out.items()}


def scale_sentence(scale: dict[str, list[str]]) -> str:
    """One plain sentence saying what scale these runs are, so no one mistakes them for the paper's."""
    if not scale:
        return "**Scale unknown:** no run has written env.json yet."

    def get(key: str) -> str:
        return " / ".join(scale.get(key, ["?"]))

    datasets = scale.get("dataset", [])
    names = " / ".join(DATASET_NAMES.get(d, d) for d in datasets) or "?"
    shape = get("image_shape").replace("x", "×")
    kind = "CPU runs" if "cpu" in get("hardware").lower() else "Runs"
    sentence = (
        f"**Scale:** {kind} on {names} ({get('train_examples')} training examples, {shape}) with "
        f"{get('encoder')}, {get('pretrain_epochs')} pretraining + {get('linear_epochs')} linear "
        f"epochs at global batch {get('global_batch_size')}, on {get('hardware')}."
    )
    paper_like = datasets and all(d in PAPER_DATASETS for d in datasets) and "50" in get("encoder")
    if not paper_like:
        sentence += (
            " This is a small-scale stand-in, not a CIFAR-10/100 or ImageNet result with "
            "ResNet-50: compare orderings and gaps with the paper, not absolute numbers."
        )
    return sentence


def provenance(runs: list[Run]) -> list[str]:
    """Lines on points done/failed/missing, train wall time, git SHAs and package versions."""
    count = {s: sum(r.state == s for r in runs) for s in (workdir.DONE, workdir.FAILED, SKIPPED)}
    planned = len(runs) - sum(r.state == SKIPPED and not r.values for r in runs)  # foreign dirs: not planned
    missing = planned - count[workdir.DONE] - count[workdir.FAILED]
    seconds = [r.metric("train_seconds") or 0.0 for r in runs if r.state == workdir.DONE]
    shared = [_number(r.point.get(workdir.PRETRAINING_SECONDS)) for r in runs if r.state == workdir.DONE]
    skipped = (
        f" {count[SKIPPED]} run director{'y' if count[SKIPPED] == 1 else 'ies'} skipped (unreadable, or "
        "another recipe's or version's; listed below)."
        if count[SKIPPED] else ""
    )
    lines = [
        f"- **Points:** {planned} planned: {count[workdir.DONE]} done, "
        f"{count[workdir.FAILED]} failed, {missing} missing or unfinished.{skipped}"
    ]
    if seconds:
        once = sum(shared)  # a shared pretraining is in each sharer's train_seconds: counted once, in its source
        note = f", each shared pretraining counted once ({format_seconds(once)} less)" if once else ""
        lines.append(
            f"- **Train wall time:** {format_seconds(sum(seconds) - once)} in total over the finished "
            f"points{note} (longest {format_seconds(max(seconds))})."
        )
    shas: dict[str, int] = {}
    for run in runs:
        if run.env.get("git_sha"):
            sha = f"`{str(run.env['git_sha'])[:12]}`" + (
                " (dirty)" if run.env.get("git_dirty") else ""
            )
            shas[sha] = shas.get(sha, 0) + 1
    code = ", ".join(f"{s} ({n} run{'' if n == 1 else 's'})" if len(shas) > 1 else s for s, n in sorted(shas.items()))
    lines.append(f"- **Code:** git {code or MISSING}.")
    lines += uncommitted_code(runs)
    lines += copied_runs(runs)
    lines += shared_pretraining(runs)
    lines += precisions(runs)
    versions: dict[str, set] = {}
    for run in runs:
        for name, version in (run.env.get("versions") or {}).items():
            versions.setdefault(name, set()).add(str(version))
    text = ", ".join(f"{k} {' / '.join(sorted(v))}" for k, v in sorted(versions.items()))
    lines.append(f"- **Versions:** {text or MISSING}.")
    return lines


def _patch_link(run: Run) -> str:
    """A link from the report's README to the run's patch in its record (`runs/<slug>/uncommitted.patch`); a
    running or unfinished run has no record yet, its patch is in its run dir."""
    if run.state in (workdir.DONE, workdir.FAILED):  # recorded beside the report (supcon.report.records)
        return f"[`{run.slug}`]({workdir.RECORDS_DIR}/{run.slug}/{run.env.get('git_patch') or workdir.PATCH})"
    return f"`{run.slug}` (not finished: its patch is in its run dir)"


def uncommitted_code(runs: list[Run], shown: int = 3) -> list[str]:
    """Which runs came from uncommitted code (env.json `git_dirty`: supcon/, runner.py or recipes/ differed from the
    commit), one line per distinct patch with its first `shown` dirty paths and links to the runs' patches; no line
    when every run is clean."""
    dirty = [r for r in runs if r.env.get("git_dirty")]
    if not dirty:
        return []
    groups: dict[tuple, list[Run]] = {}
    for run in dirty:
        key = (run.env.get("git_patch_sha256"), tuple(run.env.get("git_dirty_paths") or ()))
        groups.setdefault(key, []).append(run)
    started = sum(bool(r.env) for r in runs)
    lines = [
        f"- **Uncommitted code:** {len(dirty)} of {started} runs ran with changes to supcon/, runner.py or "
        "recipes/ that are not in their commit; `git apply` of a run's patch on its commit gives the code it ran:"
    ]
    for (digest, paths), members in groups.items():
        if not digest:
            names = ", ".join(f"`{r.slug}`" for r in members)
            lines.append(f"  - no patch recorded (env.json from before patches were kept): {names}")
            continue
        where = ", ".join(paths[:shown]) + (f" and {len(paths) - shown} more" if len(paths) > shown else "")
        lines.append(f"  - patch `{digest[:8]}` ({where}): {', '.join(_patch_link(r) for r in members)}")
    return lines


def copied_runs(runs: list[Run]) -> list[str]:
    """Which points were not trained for this recipe but copied by `grid.reuse_from` (point.json `copied_from`):
    one line per source folder, another recipe's run dirs (`runs/<other>/`) or its committed run records
    (`reports/<other>/runs/`); no line when nothing was copied."""
    copied = [r for r in runs if r.state != SKIPPED and isinstance(r.point.get("copied_from"), str)]
    if not copied:
        return []
    groups: dict[str, list[str]] = {}
    for run in sorted(copied, key=lambda r: r.slug):
        groups.setdefault(run.point["copied_from"].replace("\\", "/").rpartition("/")[0], []).append(run.slug)
    lines = [
        f"- **Copied from other recipes** (`grid.reuse_from`), not trained for this recipe: {len(copied)} "
        f"point{'' if len(copied) == 1 else 's'}, each a copy of another recipe's finished run with exactly its "
        "training settings:"
    ]
    for folder, slugs in sorted(groups.items()):
        parts = folder.split("/")
        kind = "run records" if len(parts) >= 3 and parts[-1] == workdir.RECORDS_DIR else "run dirs"
        lines.append(f"  - from the {kind} in `{folder}/`: {', '.join(f'`{s}`' for s in slugs)}")
    return lines


def _number(value: object) -> float:
    """A point.json number, 0.0 when absent or not a number."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def shared_pretraining(runs: list[Run]) -> list[str]:
    """Which points trained only their final stage, from another point's pretraining (`grid.share_pretraining`,
    point.json `pretraining_from`): one line naming them and their sources; none when no point shared."""
    shared = [(r, workdir.pretraining_from(r.point)) for r in runs if r.state != SKIPPED]
    shared = [(r, source) for r, source in shared if source is not None]
    if not shared:
        return []
    sources = {r.slug: source.replace("\\", "/").rpartition("/")[2] for r, source in shared}
    pairs = ", ".join(f"`{slug}` from `{source}`" for slug, source in sorted(sources.items()))
    n = len(shared)
    return [
        f"- **Shared pretraining** (`grid.share_pretraining`): {n} point{'' if n == 1 else 's'} trained only "
        f"{'its' if n == 1 else 'their'} final stage, from the pretraining of another point with the same "
        f"settings but the final stage's (the same encoder: their differences are the final stage's alone): {pairs}"
    ]


def _precision_group(run: Run) -> tuple[str, str]:
    """(precision, CPU speed flags) of a run whose env.json records its precision: ('mixed bfloat16' or 'float32',
    'avx2, avx512_bf16')."""
    precision = run.precision
    flags = run.env.get("cpu_flags")
    return precision, ", ".join(flags) if isinstance(flags, list) and flags else "not recorded"


def precisions(runs: list[Run], shown: int = 12) -> list[str]:
    """One line when the finished (or failed) runs did not all compute in the same precision (env.json
    `mixed_precision`): how many ran in each precision on CPUs with which speed flags (`cpu_flags`), the largest
    group first, naming the runs of the others. 'auto' picks bfloat16 only on CPUs with bfloat16 instructions, so
    one grid finished on two machines can mix the two; no line when they all agree."""
    groups: dict[tuple[str, str], list[str]] = {}
    for run in sorted(runs, key=lambda r: r.slug):
        if run.state in (workdir.DONE, workdir.FAILED) and run.precision is not None:
            groups.setdefault(_precision_group(run), []).append(run.slug)
    if len({precision for precision, _ in groups}) < 2:
        return []
    parts = []
    for i, ((precision, flags), slugs) in enumerate(sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))):
        part = f"{len(slugs)} in {precision} (CPU flags: {flags})"
        if i:  # the largest group comes first and is not named
            names = ", ".join(f"`{s}`" for s in slugs[:shown])
            part += f": {names}" + (f" and {len(slugs) - shown} more" if len(slugs) > shown else "")
        parts.append(part)
    return [
        "- **Precision:** the runs differ: " + "; ".join(parts) + ". `train_and_evaluate.mixed_precision` decides (as bound, "
        "or 'auto': bfloat16 only on CPUs with bfloat16 instructions, unless the runner's --auto_precision says); the "
        "groups round differently."
    ]


def recipe_line(line: str) -> str:
    """`# Reproduces: Table 2` -> `- **Reproduces:** Table 2` (a bullet, so lines do not merge)."""
    text = line.lstrip("#").strip()
    key, sep, rest = text.partition(":")
    if sep and key.replace(" ", "").isalpha() and len(key) <= 20:
        return f"- **{key}:** {rest.strip()}"
    return f"- {text}"


def header(runs: list[Run], spec: dict, command: str | None = None) -> list[str]:
    """Title, the command that wrote the report, the recipe's comment header, the scale sentence and table, and
    the provenance lines.

    `command`: the command that wrote it (the runner's, with --smoke, --runs_dir and --report_dir as they
    were; or the reporter's own); default `python -m supcon.report runs/<stem> --out reports/<stem>`.
    """
    stem = spec["stem"]
    command = command or f"python -m supcon.report runs/{stem} --out reports/{stem}"
    lines = [
        f"# {spec['title'] or 'Report: ' + stem}",
        "",
        f"Generated by `{command}` from the run directories alone; do not edit by hand.",
        "",
    ]
    recipe = [recipe_line(line) for line in spec["header"] if line.lstrip("#").strip()]
    lines += recipe + ([""] if recipe else [])
    if any(r.point.get("smoke") for r in runs):
        lines += [
            "**Smoke runs** (the smoke overlay: a few steps each, to test the pipeline): the "
            "numbers below mean nothing.",
            "",
        ]
    scale = scale_values(runs)
    lines += [scale_sentence(scale), ""]
    if scale:
        names = dict(SCALE_FIELDS, strategy="strategy")
        lines += [
            markdown_table(
                ["scale", "value"], [[names[k], " / ".join(v)] for k, v in scale.items()]
            ),
            "",
        ]
    return lines + provenance(runs) + [""]


def paper_note(quoted: list[dict], scale: dict[str, list[str]]) -> list[str]:
    """The sources of the quoted paper numbers, and a plain warning when they are another experiment."""
    if not quoted:
        return []
    columns = ", ".join(sorted({e["column"] for e in quoted}))
    models = ", ".join(sorted({e["model"] for e in quoted}))
    datasets = scale.get("dataset", [])
    ours = " / ".join(DATASET_NAMES.get(d, d) for d in datasets) or "?"
    encoder = " / ".join(scale.get("encoder", ["?"]))
    same = {paper_label(e["column"]) for e in quoted} <= {paper_label(d) for d in datasets}
    if same:
        note = (
            f"The paper columns quote its {columns} results with {models}; these runs use the same "
            f"dataset with {encoder} at the scale above."
        )
    else:
        note = (
            f"**The paper's numbers come from a different experiment:** its {columns} results with "
            f"{models}, while these runs are {ours} with {encoder}. Δ measures the distance from "
            "the paper's setting, not whether the reproduction failed; compare the ordering of the "
            "rows and the gaps between them."
        )
    lines = [note, "", "Paper numbers quoted (supcon/paper_numbers.csv):"]
    return lines + [f"- {e['source']}: {format_paper(e['value'])}" for e in quoted] + [""]
