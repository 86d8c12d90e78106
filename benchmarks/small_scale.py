"""Speed at CPU scale: the fmnist_table2.gin SupCon point's real stage loop vs a PyTorch step of the same model.

    python benchmarks/small_scale.py                       # ours live / cached vs torch eager / compile
    python benchmarks/small_scale.py --ours live,live_fp32,live_per_image --rounds 6

Ours is what `python runner.py recipes/fmnist_table2.gin --only METHOD=supcon` trains: gin parses the recipe
(METHOD='supcon', SEED=0), `train_and_evaluate` builds the `Run` on the real Fashion-MNIST files (first 5,000
images, 14x14, ResNet-18 x0.125, CIFAR stem, batch 256 x 2 views, LARS, the (128,) projection head), and
`Run.train_stage` runs the pretraining stage with the recipe's logging and checkpoint cadence. Only
`PRETRAIN_EPOCHS` is raised so the stage does not end while it is timed (the schedule's shape does not change
a step's cost). `live` reads the live augmentation pipeline; `cached` repeats one batch taken from it, so the
augmentation's share shows. Other variants switch one lever (see `OURS`).

PyTorch: the same tiny model (`_torch_reference.py`: ResNet-18 x0.125, CIFAR stem, 1 input channel, a
bias-free 64 -> 128 projection with L2-normalised output), SupCon loss, SGD, random 14x14x1 inputs, no
augmentation, `torch.set_num_threads(os.cpu_count())`; eager and `torch.compile`.

Every variant runs in its own worker process, built and warmed up once; the parent then alternates them,
`--rounds` times, rotating the order. Our workers report one figure per logging window (the recipe logs every
20 steps): its seconds per step; PyTorch workers time `--torch_steps` steps one by one. Views/s = batch x views
/ median step seconds. The last line is `small_scale_speedup_vs_torch: X` (our `live` over the faster PyTorch
variant).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import train_step  # noqa: E402 - machine(), save_section(), the worker protocol and alternate() live there

ROOT = train_step.ROOT
RECIPE = os.path.join(ROOT, "recipes", "fmnist_table2.gin")
BATCH, VIEWS, SIZE, WIDTH = 256, 2, 14, 0.125  # the recipe's values (checked against the built Run)
BASE_PARAMS = ["METHOD = 'supcon'", "SEED = 0", "PRETRAIN_EPOCHS = 10000"]
OURS = {  # name -> (live input pipeline?, extra gin bindings, environment): one lever switched
    "live": (True, [], {}),
    "cached": (False, [], {}),
    "live_fp32": (True, ["train_and_evaluate.mixed_precision = False"], {}),
    "live_bf16": (True, ["train_and_evaluate.mixed_precision = True"], {}),
    "live_intra1": (True, [], {"TF_NUM_INTRAOP_THREADS": "1"}),
    "cached_intra1": (False, [], {"TF_NUM_INTRAOP_THREADS": "1"}),
    "live_per_image": (True, ["train_and_evaluate.batched_augmentation = False"], {}),
    "live_xla": (True, ["train_and_evaluate.jit_compile = True"], {}),
    "live_no_xla": (True, ["train_and_evaluate.jit_compile = False"], {}),
    "live_spe1": (True, ["train_and_evaluate.steps_per_execution = 1"], {}),
}
TORCH = ("torch_eager_fp32", "torch_compile_fp32")


def ours_worker(name: str, warmup: int) -> None:
    import itertools
    import tempfile

    live, extra, _ = OURS[name.removeprefix("ours_")]
    run = train_step.build_recipe_run([RECIPE], BASE_PARAMS + extra, tempfile.mkdtemp(prefix="supcon_small_scale_"))
    planned = run.plan[0]
    found = (planned.batch_size, planned.stage.num_views, run.input_shape)
    if found != (BATCH, VIEWS, (SIZE, SIZE, 1)):
        raise SystemExit(f"fmnist_table2.gin changed: batch, views, input shape {found}; update small_scale.py")
    if not live:
        cached = next(run._train_iterator(planned))
        run._train_iterator = lambda p, **_: itertools.repeat(cached)
    clock = train_step.StepClock(train_step._protocol())
    clock.pending = warmup  # the first report (warm-up windows, tracing included) goes out unasked
    run.train_stage(planned, clock)


class Worker(train_step.Worker):
    """A worker process of this benchmark (same protocol as train_step's workers)."""

    def __init__(self, name: str, args):
        command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--warmup", str(args.warmup),
                   "--torch_steps", str(args.torch_steps)]
        env = OURS[name.removeprefix("ours_")][2] if name.startswith("ours_") else {}
        self.start(name, BATCH, VIEWS, command, env, os.path.join(args.log_dir, f"small_scale_{name}.log"))


def describe(name: str) -> str:
    if name.startswith("ours_"):
        live, extra, env = OURS[name.removeprefix("ours_")]
        feed = "live augmentation" if live else "one cached batch"
        return ", ".join([feed] + [b.removeprefix("train_and_evaluate.") for b in extra]
                         + [f"env {k}={v}" for k, v in env.items()])
    return train_step.describe(name)


HEADINGS = {  # --section -> its README heading
    "small_scale": "Small scale: the fmnist_table2 SupCon point vs a PyTorch step of the same tiny model",
    "small_scale_no_avx512": "Small scale on a CPU without AVX-512: the same comparison",
}


def markdown(rows: list[dict], speedup: dict, args, wall: dict) -> str:
    lines = [f"## {HEADINGS[args.section]}", "",
             f"ResNet-18 x{WIDTH:g} (CIFAR stem), 14x14x1 inputs, batch {BATCH} x {VIEWS} views, SupCon loss. Ours: "
             "the recipe's own stage loop (`Run.train_stage`: LARS, logging every 20 steps, checkpoints every 40, "
             "the dtype policy 'auto' picks for this CPU) on the real Fashion-MNIST files; PyTorch: the same "
             "model on random inputs without augmentation. Workers alternate: "
             f"{args.rounds} rounds x {args.windows} logging windows (ours) or {args.torch_steps * args.windows} "
             f"steps (PyTorch), after {args.warmup} warm-up windows. Median views/s (network inputs per second) with "
             "the interquartile range, and views per CPU-second.", "",
             "| variant | how | views/s (median) | IQR | views/CPU-s | n |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['variant']} | {describe(r['variant'])} | {r['images_per_second']:.0f} | "
                     f"{r['images_per_second_q1']:.0f}-{r['images_per_second_q3']:.0f} | "
                     f"{r['images_per_cpu_second']:.0f} | {r['n']} |")
    lines += ["", f"**small_scale_speedup_vs_torch: {speedup['ratio']:.3f}** = ours_live / {speedup['torch']} "
              f"(medians); round by round: median {speedup['round_median']:.3f}, range "
              f"{speedup['round_min']:.3f}-{speedup['round_max']:.3f}."]
    for name, ratio in speedup["per_ours"].items():
        lines.append(f"- ours_{name} / {speedup['torch']}: {ratio:.3f}")
    if "ours_cached" in wall and "ours_live" in wall:
        lines.append(f"- augmentation's share: live / cached step time {wall['ours_live'] / wall['ours_cached']:.3f}")
    return "\n".join(lines)


def run_benchmark(args) -> None:
    names = [f"ours_{n}" for n in args.ours.split(",") if n] + [n for n in args.torch.split(",") if n]
    if "ours_live" not in names:
        raise SystemExit("--ours must include 'live' (the figure the benchmark reports)")
    if args.section == "small_scale_no_avx512" and "avx512f" in train_step.machine()["flags"]:
        raise SystemExit("--section small_scale_no_avx512: this CPU has AVX-512")
    workers = []
    try:
        for name in names:
            workers.append(Worker(name, args))
            print(f"{name}: warm-up {[round(s, 4) for s in workers[-1].warmup['seconds']]}", flush=True)
        timed = train_step.alternate(workers, args.rounds, args.windows)
    finally:
        for w in workers:
            w.close()
    rows = train_step.summarize(workers, timed, {})
    speedup = train_step.speedup_of(rows, timed, ours_variant="ours_live")
    wall = {r["variant"]: r["median_step_seconds"] for r in rows}
    text = markdown(rows, speedup, args, wall)
    print(text)
    train_step.save_section(args.section, {"rows": rows, "speedup": speedup, "timed": timed}, text)
    print(f"small_scale_speedup_vs_torch: {speedup['ratio']:.3f}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours", default="live,cached", help=f"comma list of {', '.join(OURS)}")
    parser.add_argument("--section", default="small_scale", choices=sorted(HEADINGS),
                        help="the README section the figures go to (small_scale_no_avx512: measured on such a CPU)")
    parser.add_argument("--torch", default=",".join(TORCH), help="comma list of PyTorch variants")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--windows", type=int, default=2, help="logging windows of ours per variant per round")
    parser.add_argument("--torch_steps", type=int, default=20, help="PyTorch steps per window (the recipe logs every 20)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up windows")
    parser.add_argument("--log_dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "supcon_bench_logs"))
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup that closes the workers
    args = parse_args(argv)
    if args.worker.startswith("ours_"):
        ours_worker(args.worker, args.warmup)
    elif args.worker:
        train_step.torch_worker(args.worker, BATCH, VIEWS, args.warmup, args.torch_steps, size=SIZE, width=WIDTH,
                                image_channels=1, projection=(128,))
    else:
        run_benchmark(args)


if __name__ == "__main__":
    main()
