"""Input-pipeline throughput: 2-view SimCLR training batches per second at 32x32 and 224x224.

Runs `supcon.data.train_dataset` with `supcon.augment.simclr_augment` on a synthetic uint8 source (random
pixels; the pipeline's cost does not depend on content) and prints batches/s and views/s after a warm-up
(the first batch includes tracing), and the CPU time per view, which other load on the machine barely
changes (views/s ~ cores / CPU time per view on an idle machine). Settings follow the official recipes: CIFAR-like 32x32 with crop area
(0.2, 1), torchvision jitter and no blur; ImageNet-like 256x256 sources cropped to 224 with blur p = 0.5.

Usage: python benchmarks/input_pipeline.py [--seconds 10] [--only 32|224]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import functools  # noqa: E402
import resource  # noqa: E402

import numpy as np  # noqa: E402

from supcon import augment, data  # noqa: E402

CASES = {
    "32": dict(source_size=32, num_images=4096, batch=256, augmenter=functools.partial(
        augment.simclr_augment, image_size=32, crop_area_range=(0.2, 1.0), torchvision_jitter=True,
        blur_probability=0.0)),
    "224": dict(source_size=256, num_images=256, batch=32, augmenter=functools.partial(
        augment.simclr_augment, image_size=224, crop_area_range=(0.08, 1.0), blur_probability=0.5)),
}


def measure(case: dict, seconds: float, views: int = 2, batched_augmentation: bool = True) -> dict:
    """Batches/s of a `views`-view train_dataset with the case's augmenter over a synthetic source (the case's
    `channels`, default 3), after one warm-up batch; `batched_augmentation` as train_dataset's."""
    rng = np.random.default_rng(0)
    size = case["source_size"]
    shape = (case["num_images"], size, size, case.get("channels", 3))
    images = rng.integers(0, 256, size=shape, dtype=np.uint8)
    labels = rng.integers(0, 10, size=case["num_images"])
    source = data.ArraySource("synthetic", {"train": (images, labels)}, num_classes=10)
    dataset = data.train_dataset(source, global_batch_size=case["batch"], num_views=views,
                                 augmenter=case["augmenter"], normalize=augment.normalize, seed=0,
                                 batched_augmentation=batched_augmentation)
    iterator = iter(dataset)
    tic = time.time()
    next(iterator)
    warmup = time.time() - tic
    count, tic, cpu = 0, time.time(), _cpu_seconds()
    while time.time() - tic < seconds:
        next(iterator)
        count += 1
    elapsed, cpu = time.time() - tic, _cpu_seconds() - cpu
    batches = count / elapsed
    num_views = count * case["batch"] * views
    return {"warmup_s": warmup, "batches_per_s": batches, "views_per_s": num_views / elapsed,
            "cpu_ms_per_view": 1000.0 * cpu / num_views}


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads): robust to other load on the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parse_cases(description: str, cases: dict, argv=None, seconds_help: str = "timed seconds per case"):
    """(--seconds, [(name, case)] of `cases` that --only selects) from the command line; prints the machine's CPU
    count and load first."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=float, default=10.0, help=seconds_help)
    parser.add_argument("--only", choices=sorted(cases), help="run one case")
    args = parser.parse_args(argv)
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} (1-min average at start)")
    return args.seconds, [(name, case) for name, case in cases.items() if not args.only or name == args.only]


def main(argv=None) -> None:
    seconds, selected = parse_cases(__doc__.splitlines()[0], CASES, argv)
    for name, case in selected:
        result = measure(case, seconds)
        print(f"{name}x{name}: batch {case['batch']} x 2 views: {result['batches_per_s']:.2f} batches/s, "
              f"{result['views_per_s']:.0f} views/s, {result['cpu_ms_per_view']:.3f} CPU-ms/view "
              f"(first batch {result['warmup_s']:.1f} s)")


if __name__ == "__main__":
    main()
