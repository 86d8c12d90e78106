"""The distribution of crop areas our random-resized-crop sampler draws, beside torchvision's, for one area range.

Both are asked for crops covering `area_range` of a square image (aspect ratios 3/4-4/3). Ours follows TF's
`sample_distorted_bounding_box` (supcon.augment.batched.sample_crop_boxes): an aspect ratio uniform in the range,
then a height uniform among the integers the area range allows for it, so the areas are not uniform in the range.
torchvision's RandomResizedCrop draws the area uniformly in the range and the log aspect ratio uniformly (up to 10
attempts, then the whole image), as its documentation describes; written here from that description.

    python benchmarks/crop_areas.py --size 28 --low 0.7 --high 1.0
"""

import argparse
import math

import numpy as np

from supcon.augment import batched, keys


def ours(size: int, low: float, high: float, n: int) -> np.ndarray:
    boxes = batched.sample_crop_boxes(keys.example_keys(0, np.arange(n)), size, size, (low, high)).numpy()
    return boxes[:, 2] * boxes[:, 3] / float(size * size)  # [n] fraction of the image kept


def torchvision_like(size: int, low: float, high: float, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty(n)
    for i in range(n):
        out[i] = 1.0  # the fallback: the whole (square) image
        for _ in range(10):
            area = rng.uniform(low, high) * size * size
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < w <= size and 0 < h <= size:
                out[i] = w * h / float(size * size)
                break
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--low", type=float, default=0.7)
    parser.add_argument("--high", type=float, default=1.0)
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    quantiles = (0.1, 0.25, 0.5, 0.75, 0.9)
    print(f"crop areas (fraction of a {args.size}x{args.size} image) for area range [{args.low}, {args.high}], "
          f"{args.n} draws")
    print(f"{'sampler':18s} {'mean':>6s} " + " ".join(f"{'q' + str(int(q * 100)):>6s}" for q in quantiles)
          + f" {'whole':>6s}")
    for name, areas in (("ours (TF's)", ours(args.size, args.low, args.high, args.n)),
                        ("torchvision-like", torchvision_like(args.size, args.low, args.high, args.n))):
        print(f"{name:18s} {areas.mean():6.3f} " + " ".join(f"{np.quantile(areas, q):6.3f}" for q in quantiles)
              + f" {np.mean(areas >= 0.999):6.3f}")


if __name__ == "__main__":
    main()
