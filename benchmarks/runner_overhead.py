"""Runner overhead: an 8-point smoke grid's wall time vs the time of its points, with --jobs 1 and 2.

    python benchmarks/runner_overhead.py      # ablation_temperature.gin widened to 8 temperatures, --smoke
    python benchmarks/runner_overhead.py --runs jobs1,jobs2,jobs1_noreuse

The grid is recipes/ablation_temperature.gin with 8 temperatures (a temporary recipe that includes it), run with
`runner.py --smoke` into a temporary runs directory: validation of every point, training of the 8 points (in one
long-lived trainer process per job by default; `_noreuse`: `--noreuse_process`, a `python -m supcon.main`
process per point), the report. Per point, from its run directory:
  * point time: point.gin written (just before the runner hands the point to a trainer) -> result.json written
    (the trainer's last act for the point): gin, data, model, tracing, training, evaluation, export; with
    --noreuse_process also the process start and imports;
  * training-loop time: `train_seconds` from result.json.
Bars (issue 7): runner wall time <= 1.15 x the sum of the points' times (jobs 1); --jobs 2 shortens it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
TEMPERATURES = [0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0]


def write_recipe(directory: str) -> str:
    path = os.path.join(directory, "smoke8.gin")
    with open(path, "w") as f:
        f.write(f"include '{os.path.join(ROOT, 'recipes', 'ablation_temperature.gin')}'\n"
                f"grid.axes = {{'TEMPERATURE': {TEMPERATURES}}}\n")
    return path


def point_times(runs_root: str) -> list[dict]:
    """Per run directory: process seconds (point.gin -> result.json) and train_seconds."""
    points = []
    for slug in sorted(os.listdir(runs_root)):
        run_dir = os.path.join(runs_root, slug)
        result_path = os.path.join(run_dir, "result.json")
        if not os.path.exists(result_path):
            continue
        with open(result_path) as f:
            result = json.load(f)
        start = os.path.getmtime(os.path.join(run_dir, "point.gin"))
        points.append({"slug": slug, "process_seconds": os.path.getmtime(result_path) - start,
                       "train_seconds": result["train_seconds"]})
    return points


def run_grid(name: str, workspace: str, index: int = 0) -> dict:
    """Runs the 8-point smoke grid as `name` says (jobsN[_noreuse]); returns wall time and per-point times."""
    jobs, reuse = int(name.split("_")[0].removeprefix("jobs")), not name.endswith("_noreuse")
    runs_dir, report_dir = (os.path.join(workspace, f"{kind}_{index}_{name}") for kind in ("runs", "reports"))
    command = [sys.executable, os.path.join(ROOT, "runner.py"), write_recipe(workspace), "--smoke",
               "--jobs", str(jobs), "--runs_dir", runs_dir, "--report_dir", report_dir,
               "--reuse_process" if reuse else "--noreuse_process"]
    tic = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if proc.returncode != 0:
        raise RuntimeError(f"runner failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    roots = [os.path.join(dp, d) for dp, dirs, _ in os.walk(runs_dir) for d in dirs if d == "smoke8"]
    points = point_times(roots[0]) if roots else []
    if len(points) != len(TEMPERATURES):
        raise RuntimeError(f"expected {len(TEMPERATURES)} finished points, found {len(points)}:\n{proc.stdout}")
    return {"name": name, "jobs": jobs, "reuse_process": reuse, "wall_seconds": wall, "points": points,
            "sum_process_seconds": sum(p["process_seconds"] for p in points),
            "sum_train_seconds": sum(p["train_seconds"] for p in points)}


def markdown(runs: list[dict]) -> str:
    lines = ["## Runner overhead: an 8-point smoke grid", "",
             f"`runner.py --smoke` on recipes/ablation_temperature.gin widened to {len(TEMPERATURES)} "
             "temperatures; wall time of the whole command (validation, the 8 points, report) against the sum "
             "over points of the point time (point.gin written -> result.json written) and of the training-loop "
             "time (`train_seconds` in result.json).", "",
             "| run | jobs | trainer processes | runner wall s | sum of point times s | wall / points | "
             "sum of train_seconds | wall / train_seconds |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        how = "one per job (default)" if r["reuse_process"] else "one per point (--noreuse_process)"
        lines.append(f"| {r['name']} | {r['jobs']} | {how} | {r['wall_seconds']:.1f} | "
                     f"{r['sum_process_seconds']:.1f} | {r['wall_seconds'] / r['sum_process_seconds']:.3f} | "
                     f"{r['sum_train_seconds']:.1f} | {r['wall_seconds'] / r['sum_train_seconds']:.1f} |")
    by_name = {r["name"]: r for r in runs}
    jobs1 = [r["wall_seconds"] / r["sum_process_seconds"] for r in runs if r["name"] == "jobs1"]
    if len(jobs1) > 1:
        lines += ["", f"jobs1 wall / points over {len(jobs1)} runs: {min(jobs1):.3f}-{max(jobs1):.3f}."]
    if "jobs1" in by_name:
        for other in (r for r in runs if r["name"] != "jobs1"):
            lines += ["", f"{other['name']} vs jobs1: wall time x{other['wall_seconds'] / by_name['jobs1']['wall_seconds']:.2f}."]
    lines += ["", "A smoke point trains 4 tiny steps, so its time is mostly fixed costs (gin, dataset preparation, "
              "model building, tracing, evaluation, export of the run directory; with --noreuse_process also "
              "Python and TensorFlow imports, about 10 s per process). The runner's own share is the "
              "wall / points ratio."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="jobs1,jobs2,jobs1_noreuse",
                        help="comma list of jobsN (one trainer process per job) or jobsN_noreuse (one per point)")
    args = parser.parse_args(argv)
    names = args.runs.split(",")
    for name in names:
        if not name.removesuffix("_noreuse").removeprefix("jobs").isdigit() or not name.startswith("jobs"):
            parser.error(f"--runs: {name!r} is not jobsN or jobsN_noreuse")
    workspace = tempfile.mkdtemp(prefix="supcon_runner_overhead_")
    try:
        runs = []
        for index, name in enumerate(names):  # a name may repeat, to see the spread
            runs.append(run_grid(name, workspace, index))
            r = runs[-1]
            print(f"{name}: wall {r['wall_seconds']:.1f} s, points {r['sum_process_seconds']:.1f} s, "
                  f"train {r['sum_train_seconds']:.1f} s", flush=True)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    text = markdown(runs)
    print(text)
    import train_step

    train_step.save_section("runner_overhead", {"runs": runs}, text)
    worst = max(runs, key=lambda r: r["wall_seconds"] / r["sum_process_seconds"] if r["name"] == runs[0]["name"] else 0)
    print(f"wall_over_points_{worst['name']} (worst run): {worst['wall_seconds'] / worst['sum_process_seconds']:.3f}")


if __name__ == "__main__":
    main()
