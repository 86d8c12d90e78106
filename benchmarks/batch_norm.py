"""Batch norm in bfloat16: TF's fused kernel on bfloat16 activations vs a float32 call between two casts.

    python benchmarks/batch_norm.py [--shapes 256x32x32x64,512x14x14x8,...] [--rounds 5] [--calls 6]

`supcon.model.resnet.FusedBatchNormalization` trains batch norm with `tf.compat.v1.nn.fused_batch_norm` (oneDNN's
kernel on CPU). Under mixed precision its input is bfloat16. Two ways to call the kernel, same values (the
kernel computes in float32 and rounds y to bfloat16 either way):
- cast: bfloat16 -> float32, the float32 kernel, float32 -> bfloat16 (two full-tensor casts each way);
- direct: the kernel on the bfloat16 tensor.
Each is timed forward + backward (a ReLU and a sum after it, as in the network), in one tf.function per
variant, alternating variants within each round; medians in ms per call. The layer takes the direct path
where the channel count is a multiple of `resnet.BF16_BATCH_NORM_CHANNEL_BLOCK`: the table shows why.
Last line: `bf16_batch_norm_direct_speedup_at_64_channels: X` (cast ms / direct ms at the first shape).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as supcon.main
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DEFAULT_SHAPES = "256x32x32x64,256x16x16x128,256x4x4x512,512x14x14x8,512x14x14x16,512x7x7x24,512x7x7x32"


def _step(tf, direct: bool):
    @tf.function(autograph=False)
    def step(x, gamma, beta):
        with tf.GradientTape() as tape:
            tape.watch([x, gamma, beta])
            xi = x if direct else tf.cast(x, tf.float32)
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(xi, gamma, beta, epsilon=1.001e-5, is_training=True)
            y = tf.nn.relu(tf.cast(y, tf.bfloat16))
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        return tape.gradient(loss, [x, gamma, beta])

    return step


def measure(shape: list[int], rounds: int, calls: int) -> dict:
    import tensorflow as tf

    x = tf.cast(tf.random.stateless_normal(shape, seed=[1, 2]), tf.bfloat16)
    gamma, beta = tf.ones([shape[-1]]), tf.zeros([shape[-1]])
    steps = {"cast": _step(tf, False), "direct": _step(tf, True)}
    grads = {}
    for name, step in steps.items():
        grads[name] = [g.numpy().astype("float32") for g in step(x, gamma, beta)]  # trace + warm up
    times = {name: [] for name in steps}
    for r in range(rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for name in order:
            for _ in range(calls):
                t = time.perf_counter()
                out = steps[name](x, gamma, beta)
                out[0].numpy()
                times[name].append(time.perf_counter() - t)
    import numpy as np

    scale = float(np.max(np.abs(grads["cast"][0]))) or 1.0
    return {
        "shape": shape,
        "cast_ms": 1000 * statistics.median(times["cast"]),
        "direct_ms": 1000 * statistics.median(times["direct"]),
        "max_dx_difference_rel": float(np.max(np.abs(grads["cast"][0] - grads["direct"][0]))) / scale,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help="comma list of BxHxWxC")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=6, help="timed calls per variant per round")
    args = parser.parse_args(argv)
    import train_step

    from supcon.model import resnet

    rows = []
    for text in args.shapes.split(","):
        shape = [int(v) for v in text.split("x")]
        r = measure(shape, args.rounds, args.calls)
        r["ratio"] = r["cast_ms"] / r["direct_ms"]
        r["layer_path"] = "direct" if shape[-1] % resnet.BF16_BATCH_NORM_CHANNEL_BLOCK == 0 else "cast"
        rows.append(r)
        print(f"{text:>16s}  cast {r['cast_ms']:8.2f} ms  direct {r['direct_ms']:8.2f} ms  "
              f"cast/direct {r['ratio']:5.2f}  layer uses {r['layer_path']}", flush=True)
    lines = [
        "## Batch norm in bfloat16: the fused kernel on bfloat16 vs float32 between casts", "",
        "`tf.compat.v1.nn.fused_batch_norm` (oneDNN) forward + backward with a ReLU after it, bfloat16 "
        "activations; 'cast': bfloat16 -> float32 -> kernel -> bfloat16; 'direct': the kernel on bfloat16 "
        f"(same values). {args.rounds} alternating rounds x {args.calls} calls; median ms per call. "
        "`FusedBatchNormalization` takes the direct path where channels are a multiple of "
        f"{resnet.BF16_BATCH_NORM_CHANNEL_BLOCK}.", "",
        "| shape (B x H x W x C) | cast ms | direct ms | cast / direct | layer's path | max dx difference (rel.) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {'x'.join(map(str, r['shape']))} | {r['cast_ms']:.2f} | {r['direct_ms']:.2f} | "
                     f"{r['ratio']:.2f} | {r['layer_path']} | {r['max_dx_difference_rel']:.1e} |")
    train_step.save_section("batch_norm", {"rows": rows}, "\n".join(lines))
    print(f"bf16_batch_norm_direct_speedup_at_64_channels: {rows[0]['ratio']:.3f}")


if __name__ == "__main__":
    main()
