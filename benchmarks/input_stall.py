"""Does the input pipeline stall training? Our step fed live by SimCLR augmentation vs by one cached batch.

    python benchmarks/input_stall.py                    # 32x32, batch 128 x 2 views, ResNet-18 at widths 1 and 0.25
    python benchmarks/input_stall.py --widths 0.25 --rounds 6

Both are our default configuration on this CPU (`--variant fp32_onednn`: float32, oneDNN on) running the recipe's
own training loop (`Run.train_stage`, see benchmarks/train_step.py) in worker
processes that alternate: `live` reads the real tf.data pipeline (synthetic 32x32x3 uint8 source -> random
crop, flip, colour jitter, grayscale as base/cifar10.gin, 2 views, normalisation, batching, prefetch);
`cached` repeats one batch taken from that pipeline. The issue's bar: live / cached step time <= 1.05.
The narrow ResNet-18 (width 0.25, base/resnet18_tiny.gin, what CPU-scale recipes train) makes the step
~10x cheaper, so any stall shows more.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import train_step  # noqa: E402 - the worker machinery lives there


def measure(width: float, args) -> dict:
    """Alternates a live and a cached worker at one width; returns their step seconds."""
    args.width = width
    workers = []
    try:
        workers.append(train_step.Worker(f"ours_{args.variant}", args.batch, args, live=True))
        workers.append(train_step.Worker(f"ours_{args.variant}", args.batch, args, live=False))
        seconds = {"live": [], "cached": []}
        for r in range(args.rounds):
            order = list(zip(("live", "cached"), workers, strict=True))
            for kind, worker in order if r % 2 == 0 else order[::-1]:
                # The first `drain` steps of a round may use batches prefetched while the worker was idle.
                seconds[kind] += worker.time(args.drain + args.steps)["seconds"][args.drain:]
            print(f"width {width:g} round {r + 1}: live {statistics.median(seconds['live']):.3f} s, "
                  f"cached {statistics.median(seconds['cached']):.3f} s", flush=True)
    finally:
        for w in workers:
            w.close()
    return seconds


def markdown(results: dict, args) -> str:
    lines = ["## Input pipeline: live augmentation vs cached tensors", "",
             f"Our step (ours_{args.variant}) at 32x32, batch {args.batch} x {args.views} views, fed by the live SimCLR pipeline or by "
             f"one cached batch; worker processes alternate, {args.rounds} rounds x {args.steps} timed steps (each "
             f"round first runs {args.drain} untimed steps, which may use batches prefetched while the worker "
             f"waited), after {args.warmup} warm-up steps. Bar: live / cached <= 1.05.", "",
             "| ResNet-18 width | live s/step (median) | cached s/step (median) | live / cached | images/s live |",
             "| --- | --- | --- | --- | --- |"]
    for width, seconds in results.items():
        live, cached = statistics.median(seconds["live"]), statistics.median(seconds["cached"])
        lines.append(f"| {width:g} | {live:.3f} | {cached:.3f} | {live / cached:.3f} | "
                     f"{args.batch * args.views / live:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--widths", default="1.0,0.25")
    parser.add_argument("--variant", default="fp32_onednn", choices=sorted(train_step.OURS),
                        help="our step's variant (benchmarks/train_step.py OURS); default: the default on this CPU")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--drain", type=int, default=3, help="untimed steps at the start of every round")
    parser.add_argument("--log_dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "supcon_bench_logs"))
    args = parser.parse_args(argv)
    results = {float(w): measure(float(w), args) for w in args.widths.split(",") if w}
    text = markdown(results, args)
    print(text)
    train_step.save_section("input_stall", {"seconds": {str(k): v for k, v in results.items()}}, text)
    ratios = [statistics.median(s["live"]) / statistics.median(s["cached"]) for s in results.values()]
    print(f"live_over_cached: {max(ratios):.3f}")


if __name__ == "__main__":
    main()
