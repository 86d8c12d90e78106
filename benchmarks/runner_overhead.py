"""Runner overhead: an 8-point smoke grid's wall time vs the time of its points, with --jobs 1 and 2.

    python benchmarks/runner_overhead.py            # ablation_temperature.gin widened to 8 temperatures, --smoke

The grid is recipes/ablation_temperature.gin with 8 temperatures (a temporary recipe that includes it), run with
`runner.py --smoke` into a temporary runs directory: validation of every point, 8 `python -m supcon.main`
subprocesses, the report. Per point, from its run directory:
  * process time: point.gin written (just before the subprocess starts) -> result.json written (the trainer's
    last act), i.e. the whole `supcon.main` process: imports, gin, data, model, training, evaluation;
  * training time: `train_seconds` from result.json (the training loop only).
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


def run_grid(jobs: int, workspace: str) -> dict:
    """Runs the 8-point smoke grid with `jobs`; returns wall time and the per-point times."""
    runs_dir, report_dir = (os.path.join(workspace, f"{kind}_jobs{jobs}") for kind in ("runs", "reports"))
    command = [sys.executable, os.path.join(ROOT, "runner.py"), write_recipe(workspace), "--smoke",
               "--jobs", str(jobs), "--runs_dir", runs_dir, "--report_dir", report_dir]
    tic = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if proc.returncode != 0:
        raise RuntimeError(f"runner failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    roots = [os.path.join(dp, d) for dp, dirs, _ in os.walk(runs_dir) for d in dirs if d == "smoke8"]
    points = point_times(roots[0]) if roots else []
    if len(points) != len(TEMPERATURES):
        raise RuntimeError(f"expected {len(TEMPERATURES)} finished points, found {len(points)}:\n{proc.stdout}")
    return {"jobs": jobs, "wall_seconds": wall, "points": points,
            "sum_process_seconds": sum(p["process_seconds"] for p in points),
            "sum_train_seconds": sum(p["train_seconds"] for p in points)}


def markdown(runs: list[dict]) -> str:
    lines = ["## Runner overhead: an 8-point smoke grid", "",
             f"`runner.py --smoke` on recipes/ablation_temperature.gin widened to {len(TEMPERATURES)} "
             "temperatures; wall time of the whole command (validation, 8 trainer processes, report) against "
             "the sum over points of the trainer process time and of the training-loop time (result.json).", "",
             "| jobs | runner wall s | sum of point processes s | wall / processes | sum of train_seconds | "
             "wall / train_seconds |", "| --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        lines.append(f"| {r['jobs']} | {r['wall_seconds']:.1f} | {r['sum_process_seconds']:.1f} | "
                     f"{r['wall_seconds'] / r['sum_process_seconds']:.3f} | {r['sum_train_seconds']:.1f} | "
                     f"{r['wall_seconds'] / r['sum_train_seconds']:.1f} |")
    if len(runs) > 1:
        lines += ["", f"--jobs {runs[1]['jobs']} vs 1: wall time x{runs[1]['wall_seconds'] / runs[0]['wall_seconds']:.2f}."]
    lines += ["", "A smoke point trains 4 tiny steps, so its process time is mostly fixed costs (Python and "
              "TensorFlow imports, gin, dataset preparation, tracing, evaluation, export of the run directory); "
              "the runner's own share is the first ratio."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", default="1,2", help="comma list of --jobs values to run")
    args = parser.parse_args(argv)
    workspace = tempfile.mkdtemp(prefix="supcon_runner_overhead_")
    try:
        runs = []
        for jobs in (int(j) for j in args.jobs.split(",")):
            runs.append(run_grid(jobs, workspace))
            r = runs[-1]
            print(f"jobs {jobs}: wall {r['wall_seconds']:.1f} s, points {r['sum_process_seconds']:.1f} s, "
                  f"train {r['sum_train_seconds']:.1f} s", flush=True)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    text = markdown(runs)
    print(text)
    import train_step

    train_step.save_section("runner_overhead", {"runs": runs}, text)
    print(f"wall_over_points_jobs1: {runs[0]['wall_seconds'] / runs[0]['sum_process_seconds']:.3f}")


if __name__ == "__main__":
    main()
