"""RandAugment input pipeline: per-image vs batched views/s and CPU time per view, at 14x14x1 and 32x32x3.

Runs `supcon.data.train_dataset` (2 views, batch 256) with `supcon.augment.randaugment` (2 layers, magnitude 9,
Cutout and translation scaled from tf-models' 224 px to the image, as recipes/fmnist_fig7.gin) on a synthetic
uint8 source, once with
`batched_augmentation=False` (one `tf.switch_case` RandAugment per view) and once batched
(`supcon.augment.batched_policies`), and prints views/s after a warm-up batch and the CPU time per view (user +
system of this process), which other load on the machine barely changes. Cases: Fashion-MNIST-like 28x28x1
cropped to 14 (fmnist_fig7's crop area (0.85, 1)), and CIFAR-like 32x32x3 (crop area (0.2, 1)).

Usage: python benchmarks/randaugment.py [--seconds 10] [--only 14|32]
"""

from __future__ import annotations

import functools
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import input_pipeline  # noqa: E402 - measure() lives there (it puts the project on sys.path)

from supcon import augment  # noqa: E402

CASES = {
    "14": dict(source_size=28, channels=1, num_images=4096, batch=256, augmenter=functools.partial(
        augment.randaugment, image_size=14, crop_area_range=(0.85, 1.0), num_layers=2, magnitude=9,
        cutout_const=2.5, translate_const=6.25)),
    "32": dict(source_size=32, channels=3, num_images=4096, batch=256, augmenter=functools.partial(
        augment.randaugment, image_size=32, crop_area_range=(0.2, 1.0), num_layers=2, magnitude=9,
        cutout_const=40 * 32 / 224, translate_const=100 * 32 / 224)),
}


def main(argv=None) -> None:
    seconds, selected = input_pipeline.parse_cases(__doc__.splitlines()[0], CASES, argv,
                                                   "timed seconds per case and path")
    for name, case in selected:
        results = {}
        for path, batched in (("per-image", False), ("batched", True)):
            results[path] = result = input_pipeline.measure(case, seconds, batched_augmentation=batched)
            print(f"{name}x{name}x{case['channels']} {path:9s}: batch {case['batch']} x 2 views: "
                  f"{result['views_per_s']:.0f} views/s, {result['cpu_ms_per_view']:.4f} CPU-ms/view "
                  f"(first batch {result['warmup_s']:.1f} s)")
        speedup = results["batched"]["views_per_s"] / results["per-image"]["views_per_s"]
        cpu_ratio = results["per-image"]["cpu_ms_per_view"] / results["batched"]["cpu_ms_per_view"]
        print(f"{name}x{name}x{case['channels']} batched / per-image: {speedup:.1f}x views/s, "
              f"{cpu_ratio:.1f}x less CPU per view")


if __name__ == "__main__":
    main()
