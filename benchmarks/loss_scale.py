"""The contrastive loss at scale: direct vs blockwise path, time and peak extra memory, same values.

    python benchmarks/loss_scale.py                       # global batch 8192 x 2 views x 128-d, labels of 100 classes
    python benchmarks/loss_scale.py --rounds 5 --crossover 128,256,512,1024,2048

Each measurement runs in a fresh subprocess (one variant, `--steps` timed forward+backward calls of the loss
after one warm-up call), variants alternating, `--rounds` times. Memory is measured twice, honestly:
  * RSS: the kernel's high-water mark (VmHWM, reset through /proc/self/clear_refs after warm-up) minus the
    resident size before the timed calls;
  * allocator: `tf.config.experimental.get_memory_info('CPU:0')` peak minus current before the timed calls,
    in a separate process run with TF_CPU_ALLOCATOR_USE_BFC=true (TF's CPU allocator keeps no statistics
    otherwise).
Variants: `direct` (supcon.model.losses, blockwise dispatch disabled), `blockwise` (supcon.model.losses.contrastive_loss as
training calls it: dispatched to the blockwise path, XLA-compiled blocks), `blockwise_nojit` (no XLA).
The crossover table (in-process, alternating) sets supcon.model.losses.BLOCKWISE_MIN_ENTRIES.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PREFIX = "@@ "
VARIANTS = ("direct", "blockwise", "blockwise_nojit")


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def loss_fn(variant: str):
    """`fn(features, labels) -> per-sample loss` of a variant (temperature 0.1, the official defaults)."""
    from supcon.model import losses, losses_blockwise

    if variant == "direct":
        losses.BLOCKWISE_MIN_ENTRIES = 2**62
        return lambda z, y: losses.contrastive_loss(z, y, temperature=0.1)
    if variant == "blockwise":
        return lambda z, y: losses.contrastive_loss(z, y, temperature=0.1)  # dispatches above the threshold
    if variant == "blockwise_nojit":
        return lambda z, y: losses_blockwise.blockwise_contrastive_loss(z, y, temperature=0.1, jit_compile=False)
    raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")


def inputs(batch: int, views: int, dim: int, seed: int = 0):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    z = rng.normal(size=(batch, views, dim)).astype(np.float32)
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    return tf.constant(z), tf.constant(rng.integers(0, 100, batch))


def compiled_step(fn):
    import tensorflow as tf

    @tf.function
    def step(z, y):
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = tf.reduce_mean(fn(z, y))
        return loss, tape.gradient(loss, z)

    return step


def child(args) -> dict:
    """One variant in this fresh process: warm-up, then timed calls with the memory high-water marks."""
    import tensorflow as tf

    z, y = inputs(args.batch, args.views, args.dim)
    step = compiled_step(loss_fn(args.child))
    loss, grad = step(z, y)
    grad.numpy()
    bfc = os.environ.get("TF_CPU_ALLOCATOR_USE_BFC") == "true"
    if bfc:
        tf.config.experimental.reset_memory_stats("CPU:0")
        before_alloc = tf.config.experimental.get_memory_info("CPU:0")["current"]
    before_rss = _status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    seconds = []
    for _ in range(args.steps):
        tic = time.perf_counter()
        loss, grad = step(z, y)
        grad.numpy()
        seconds.append(time.perf_counter() - tic)
    result = {"variant": args.child, "batch": args.batch, "seconds": seconds, "loss": float(loss),
              "rss_peak_extra_mib": _status_mib("VmHWM") - before_rss}
    if bfc:
        info = tf.config.experimental.get_memory_info("CPU:0")
        result["alloc_peak_extra_mib"] = (info["peak"] - before_alloc) / 2**20
    return result


def check(args) -> dict:
    """Values and gradients of the blockwise path against the direct one at full size (one process)."""
    import numpy as np

    from supcon.model import losses, losses_blockwise

    z, y = inputs(args.batch, args.views, args.dim)
    out = {}
    # Explicit functions: loss_fn('direct') raises the dispatch threshold for the whole process.
    fns = {"direct": loss_fn("direct"),
           "blockwise": lambda z, y: losses_blockwise.blockwise_contrastive_loss(z, y, temperature=0.1)}
    assert losses.BLOCKWISE_MIN_ENTRIES == 2**62  # so contrastive_loss above is the direct path
    for variant, fn in fns.items():
        loss, grad = compiled_step(fn)(z, y)
        out[variant] = (float(loss), grad.numpy())
    (la, ga), (lb, gb) = out["direct"], out["blockwise"]
    return {"loss_direct": la, "loss_blockwise": lb, "loss_relative_difference": abs(la - lb) / abs(la),
            "grad_max_difference_relative_to_max": float(np.max(np.abs(ga - gb)) / np.max(np.abs(ga)))}


def spawn(mode: str, variant: str, args, bfc: bool = False) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    if bfc:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    command = [sys.executable, os.path.abspath(__file__), f"--{mode}", variant, "--batch", str(args.batch),
               "--views", str(args.views), "--dim", str(args.dim), "--steps", str(args.steps)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith(PREFIX):
            return json.loads(line[len(PREFIX):])
    raise RuntimeError(f"{mode} {variant} failed:\n{proc.stderr[-3000:]}")


def crossover(sizes: list[int], args) -> list[dict]:
    """Direct vs blockwise (dispatch forced) per global batch, in this process, alternating; medians in ms."""
    from supcon.model import losses, losses_blockwise

    threshold, losses.BLOCKWISE_MIN_ENTRIES = losses.BLOCKWISE_MIN_ENTRIES, 2**62  # direct path unless forced
    try:
        return _crossover_rows(sizes, args, losses, losses_blockwise)
    finally:
        losses.BLOCKWISE_MIN_ENTRIES = threshold


def _crossover_rows(sizes, args, losses, losses_blockwise) -> list[dict]:
    fns = {"direct": lambda z, y: losses.contrastive_loss(z, y, temperature=0.1),
           "blockwise": lambda z, y: losses_blockwise.blockwise_contrastive_loss(z, y, temperature=0.1)}
    rows = []
    for batch in sizes:
        z, y = inputs(batch, args.views, args.dim)
        steps = {name: compiled_step(fn) for name, fn in fns.items()}
        times = {name: [] for name in steps}
        for step in steps.values():
            step(z, y)[1].numpy()  # trace (and compile)
        for r in range(args.rounds):
            for name in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
                for _ in range(args.steps):
                    tic = time.perf_counter()
                    steps[name](z, y)[1].numpy()
                    times[name].append(time.perf_counter() - tic)
        entries = (args.views * batch) ** 2
        row = {"batch": batch, "entries": entries,
               **{f"{k}_ms": 1000 * statistics.median(v) for k, v in times.items()}}
        rows.append(row)
        print(f"batch {batch:6d} ({entries:>11,d} entries): direct {row['direct_ms']:9.1f} ms, "
              f"blockwise {row['blockwise_ms']:9.1f} ms", flush=True)
    return rows


def markdown(args, runs: dict, memory: dict, checked: dict, cross: list[dict]) -> str:
    from supcon.model import losses

    a = args.views * args.batch
    lines = ["## Contrastive loss at scale: blockwise vs direct", "",
             f"Global batch {args.batch} x {args.views} views x {args.dim}-d (labels of 100 classes), "
             f"forward + backward of the loss; A = M = {a} anchors and contrast entries "
             f"([A, M] float32 = {a * a * 4 / 2**20:.0f} MiB per matrix). Fresh process per measurement, "
             f"{args.rounds} alternating rounds x {args.steps} calls after a warm-up call.", "",
             "| variant | seconds per call (median) | min-max | RSS peak extra (MiB) | allocator peak extra (MiB) |",
             "| --- | --- | --- | --- | --- |"]
    for variant, secs in runs.items():
        rss = max(memory[variant]["rss"]) if memory[variant]["rss"] else float("nan")
        alloc = memory[variant].get("alloc", float("nan"))
        lines.append(f"| {variant} | {statistics.median(secs):.2f} | {min(secs):.2f}-{max(secs):.2f} | "
                     f"{rss:.0f} | {alloc:.0f} |")
    lines += ["", "RSS peak: the largest over the rounds. Same result at this size (one process, both paths): "
              f"loss {checked['loss_direct']:.6f} vs {checked['loss_blockwise']:.6f} (relative difference "
              f"{checked['loss_relative_difference']:.1e}); largest gradient difference "
              f"{checked['grad_max_difference_relative_to_max']:.1e} of the largest gradient entry.", ""]
    if cross:
        lines += ["Crossover (one process, alternating, medians; ms per forward + backward):", "",
                  "| global batch | [A x M] entries | direct ms | blockwise ms | blockwise / direct |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['batch']} | {r['entries']:,} | {r['direct_ms']:.1f} | {r['blockwise_ms']:.1f} | "
                  f"{r['blockwise_ms'] / r['direct_ms']:.2f} |" for r in cross]
        lines += ["", f"`supcon.model.losses.BLOCKWISE_MIN_ENTRIES` = {losses.BLOCKWISE_MIN_ENTRIES:,}: "
                  "`contrastive_loss` switches to the blockwise path at and above that many entries."]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--variants", default="direct,blockwise,blockwise_nojit")
    parser.add_argument("--crossover", default="128,256,512,1024,2048,4096",
                        help="global batches for the crossover table ('' to skip)")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--check", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child or args.check:
        print(PREFIX + json.dumps(child(args) if args.child else check(args)), flush=True)
        return
    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    variants = [v for v in args.variants.split(",") if v]
    runs = {v: [] for v in variants}
    memory = {v: {"rss": []} for v in variants}
    for r in range(args.rounds):
        for v in variants[r % len(variants):] + variants[: r % len(variants)]:
            result = spawn("child", v, args)
            runs[v] += result["seconds"]
            memory[v]["rss"].append(result["rss_peak_extra_mib"])
            print(f"round {r + 1}: {v} {[round(s, 2) for s in result['seconds']]} s, "
                  f"RSS peak extra {result['rss_peak_extra_mib']:.0f} MiB", flush=True)
    for v in variants:
        memory[v]["alloc"] = spawn("child", v, args, bfc=True)["alloc_peak_extra_mib"]
        print(f"{v}: allocator peak extra {memory[v]['alloc']:.0f} MiB", flush=True)
    checked = spawn("check", "both", args)
    cross = crossover([int(b) for b in args.crossover.split(",") if b], args) if args.crossover else []
    text = markdown(args, runs, memory, checked, cross)
    print(text)
    import train_step

    train_step.save_section("loss_scale", {"seconds": runs, "memory": memory, "check": checked,
                                           "crossover": cross}, text)


if __name__ == "__main__":
    main()
