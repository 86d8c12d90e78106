"""Times our real training step against a PyTorch SupContrast-style step, side by side and alternating.

    python benchmarks/train_step.py                 # ResNet-18 (CIFAR stem), batch 128 x 2 views, 32x32
    python benchmarks/train_step.py --rounds 8 --steps 3 --ours fp32,bf16 --torch all

Ours is the step a recipe runs: gin parses base/cifar10.gin + base/one_device.gin + protocols/supcon.gin with a
full-width ResNet-18 and a (512, 128) projection head, `train_and_evaluate` builds the `Run` (seed, determinism,
mixed-precision policy, strategy, model, optimizers), and `Run.train_stage` runs its own training loop; only the
dataset is replaced by random 32x32x3 images (CIFAR-10 cannot be downloaded here; the cost of a step does not
depend on pixel values) and the input iterator by one cached batch (benchmarks/input_stall.py measures the live
pipeline). Each variant lives in its own worker process, built and warmed up once; the parent then times
`--steps` steps of every variant in turn, `--rounds` times, rotating the order, and reports medians.

Images/s counts network inputs (views): batch x views / step seconds. Every variant is first probed at
`--probe_batch`; one too slow for a full batch on this CPU (estimated step > `--max_step_seconds`) is timed at
the probe batch and flagged. Variants (`OURS`, `_torch_reference.VARIANTS`) differ in recipe options (gin) or
in the worker's environment (e.g. TF_ENABLE_ONEDNN_OPTS=1); the table says which.
The last line is `speedup_vs_torch: <ours / fastest PyTorch variant>`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REPORT_DIR = os.path.join(ROOT, "reports", "benchmarks")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # run as a script from anywhere: `supcon` is imported from this checkout
OURS = {  # name -> (extra gin bindings: recipe options, environment of the worker: not recipe options)
    # TF's own default on a CPU without AVX-512 VNNI/BF16 or AMX: oneDNN off. supcon.main turns it on.
    "fp32": (["train_and_evaluate.mixed_precision = False"], {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "bf16": (["train_and_evaluate.mixed_precision = True"], {"TF_ENABLE_ONEDNN_OPTS": "0"}),
    "fp32_onednn": (["train_and_evaluate.mixed_precision = False"], {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    "bf16_onednn": (["train_and_evaluate.mixed_precision = True"], {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    "fp32_onednn_unfused": (["train_and_evaluate.mixed_precision = False", "resnet.fused_batch_norm = False"],
                            {"TF_ENABLE_ONEDNN_OPTS": "1"}),  # Keras' own batch-norm ops
    "fp32_onednn_inter1": (["train_and_evaluate.mixed_precision = False"],
                           {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_NUM_INTEROP_THREADS": "1"}),
    "bf16_onednn_inter1": (["train_and_evaluate.mixed_precision = True"],
                           {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_NUM_INTEROP_THREADS": "1"}),
    "fp32_onednn_nondeterministic": (["train_and_evaluate.mixed_precision = False",
                                      "train_and_evaluate.deterministic = False"], {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    "fp32_xla": (["train_and_evaluate.mixed_precision = False"], {"TF_XLA_FLAGS": "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit"}),
}
PREFIX = "@@ "  # marks protocol lines on a worker's stdout


def recipe_params(batch: int, views: int, extra=(), width: float = 1.0) -> list[str]:
    """Gin bindings of the benchmark recipe (after base/cifar10.gin, base/one_device.gin, protocols/supcon.gin)."""
    return [
        "include 'base/resnet18_tiny.gin'", f"WIDTH = {width}", f"BATCH_SIZE = {batch}", "TEMPERATURE = 0.1",
        "SUPCON_PROJECTION_LAYERS = (512, 128)", "PRETRAIN_EPOCHS = 1000", "PRETRAIN_LR = 0.05",
        "PRETRAIN_WEIGHT_DECAY = 1e-4", "LINEAR_EPOCHS = 1", "LINEAR_LR = 0.1",
        "pretrain/stage.optimizer = @pretrain/sgd", "linear/stage.optimizer = @linear/sgd",
        f"pretrain/stage.num_views = {views}", "train_and_evaluate.knn_k = 0",
        "train_and_evaluate.export_model = False", "train_and_evaluate.log_every_steps = 1",
        "train_and_evaluate.checkpoint_every_steps = 1000000000", *extra,
    ]


def synthetic_source(examples: int = 4096, size: int = 32, seed: int = 0):
    """A CIFAR-shaped in-memory source of random uint8 images (10 classes)."""
    import numpy as np

    from supcon import data

    rng = np.random.default_rng(seed)

    def split(n):
        return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 10, n)

    return data.ArraySource("cifar10", {"train": split(examples), "test": split(256)}, num_classes=10)


def build_run(params: list[str], workdir: str, examples: int = 4096):
    """The benchmark recipe's `Run` on a synthetic CIFAR-shaped source (CIFAR-10 is not on this machine)."""
    from supcon import main as supcon_main

    files = [os.path.join(supcon_main.RECIPES_DIR, f) for f in ("base/cifar10.gin", "base/one_device.gin",
                                                                 "protocols/supcon.gin")]
    return build_recipe_run(files, params, workdir, synthetic_source(examples))


def check_onednn() -> None:
    """Exits unless TF runs the oneDNN kernels TF_ENABLE_ONEDNN_OPTS asks for. TF reads the variable when it is
    first imported: imported before `supcon.main` set it, an AVX2 CPU would time Eigen's kernels instead
    (2.6x slower on the fmnist_table2 step), which is not what a run trains with."""
    from tensorflow.python.util import _pywrap_util_port

    wanted = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if wanted in ("0", "1") and _pywrap_util_port.IsMklEnabled() != (wanted == "1"):
        raise SystemExit(f"TF_ENABLE_ONEDNN_OPTS={wanted} but TensorFlow was imported before it was set: "
                         "its oneDNN kernels are " + ("off" if wanted == "1" else "on"))


def build_recipe_run(files: list[str], params: list[str], workdir: str, source=None):
    """Parses the gin files, calls the gin root as `supcon.main` does and returns the `Run` it builds.

    `source`, if given, replaces the dataset the recipe names."""
    import gin  # noqa: I001 - supcon.main before supcon.data: it sets TF_ENABLE_ONEDNN_OPTS before TensorFlow loads

    from supcon import main as supcon_main
    from supcon import data
    from supcon.train import root
    from supcon.train import run as trainer

    check_onednn()
    supcon_main._register()
    supcon_main.parse(files, params)
    if source is not None:
        data.load_source = lambda name, data_dir=None: source
    built, original = [], trainer.Run

    class _Built(Exception):
        pass

    def capture(*args):
        built.append(original(*args))
        raise _Built

    trainer.Run = capture
    try:
        with gin.config_scope(supcon_main.method_scope()):
            root.train_and_evaluate(workdir=workdir, mode="train")
    except Exception:  # noqa: BLE001 - gin re-raises _Built as a proxy type
        if not built:
            raise
    finally:
        trainer.Run = original
    return built[0]


class StepClock:
    """The logger `Run.train_stage` calls at every logging window: one seconds-per-step figure per window (the
    benchmark recipes log every step), and it talks to the parent in between."""

    def __init__(self, channel):
        self.channel, self.pending = channel, 0
        self.record = {"seconds": [], "cpu_seconds": [], "losses": []}
        self.resumed, self.cpu_resumed = time.perf_counter(), time.process_time()

    def __call__(self, planned, step, window):
        steps = max(1, window["steps"])
        self.record["seconds"].append((time.perf_counter() - self.resumed) / steps)
        self.record["cpu_seconds"].append((time.process_time() - self.cpu_resumed) / steps)
        self.record["losses"].append(window["loss"][-1]["loss"])
        self.pending -= 1
        if self.pending <= 0:
            self.pending = self.channel(self.record)  # blocks until the next command
            self.record = {"seconds": [], "cpu_seconds": [], "losses": []}
        self.resumed, self.cpu_resumed = time.perf_counter(), time.process_time()


def _protocol():
    """Returns `channel(record) -> steps to run next` over stdin/stdout; exits on 'quit'."""

    def channel(record):
        if record["seconds"]:
            print(PREFIX + json.dumps(record), flush=True)
        command = sys.stdin.readline().split()
        if not command or command[0] == "quit":
            sys.exit(0)
        return int(command[1])

    return channel


def ours_worker(name: str, batch: int, views: int, live: bool, warmup: int, width: float = 1.0) -> None:
    """Worker for one of our variants: builds the Run, then trains forever under the parent's commands."""
    import itertools
    import tempfile

    run = build_run(recipe_params(batch, views, OURS[name.removeprefix("ours_")][0], width), tempfile.mkdtemp())
    planned = run.plan[0]
    if not live:
        cached = next(run._train_iterator(planned))
        run._train_iterator = lambda p: itertools.repeat(cached)
    clock = StepClock(_protocol())
    clock.pending = warmup  # the first report (warm-up steps, tracing included) goes out unasked
    run.train_stage(planned, clock)


def torch_worker(name: str, batch: int, views: int, warmup: int, steps_per_command: int = 1, size: int = 32,
                 **model) -> None:
    """Worker for a PyTorch variant: same protocol, its own loop; a command of n means n x steps_per_command
    steps. `model`: `_torch_reference.make_step`'s model options (width, image_channels, projection)."""
    import _torch_reference as ref

    step = ref.make_step(name, batch, views, threads=os.cpu_count(), **model)
    images, labels = ref.example_batch(batch, views, size=size, channels=model.get("image_channels", 3))
    channel = _protocol()
    pending = warmup * steps_per_command
    while True:
        record = {"seconds": [], "cpu_seconds": [], "losses": []}
        for _ in range(pending):
            tic, cpu = time.perf_counter(), time.process_time()
            record["losses"].append(step(images, labels))
            record["seconds"].append(time.perf_counter() - tic)
            record["cpu_seconds"].append(time.process_time() - cpu)
        pending = channel(record) * steps_per_command


# ------------------------------------------------------------------------------------------------------------
# Parent side


class Worker:
    """A worker process (one variant at one batch size); its first message reports the warm-up steps."""

    def __init__(self, name: str, batch: int, args, live: bool = False):
        command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--batch", str(batch),
                   "--views", str(args.views), "--warmup", str(args.warmup), "--width", str(args.width)]
        command += ["--live"] if live else []
        self.start(name, batch, args.views, command, OURS.get(name.removeprefix("ours_"), ([], {}))[1],
                   os.path.join(args.log_dir, f"{name}{'_live' if live else ''}_b{batch}.log"))

    def start(self, name: str, batch: int, views: int, command: list[str], env: dict, log_path: str) -> None:
        """Starts the worker process (`env` on top of ours) and reads its warm-up report."""
        self.name, self.batch, self.views, self.log_path = name, batch, views, log_path
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, HERE]), TF_CPP_MIN_LOG_LEVEL="2", **env)
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, cwd=ROOT, env=env)
        self.warmup = self._read()

    def _read(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.log.flush()
                with open(self.log_path) as f:
                    tail = f.read()[-3000:]
                raise RuntimeError(f"worker {self.name} (batch {self.batch}) died:\n{tail}")
            if line.startswith(PREFIX):
                return json.loads(line[len(PREFIX):])

    def time(self, steps: int) -> dict:
        self.proc.stdin.write(f"time {steps}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        self.log.close()


def start_variant(name: str, args) -> tuple[Worker, str]:
    """Probes a variant at the probe batch; restarts it at the full batch unless that would be too slow."""
    probe = Worker(name, args.probe_batch, args)
    per_image = probe.warmup["seconds"][-1] / (args.probe_batch * args.views)
    estimate = per_image * args.batch * args.views
    if estimate > args.max_step_seconds:
        note = (f"timed at batch {args.probe_batch}: a batch-{args.batch} step would take ~{estimate:.0f} s "
                f"(> --max_step_seconds {args.max_step_seconds:g})")
        return probe, note
    probe.close()
    return Worker(name, args.batch, args), ""


def alternate(workers: list[Worker], rounds: int, steps: int) -> dict:
    """Times `steps` steps of every worker in turn, `rounds` times, rotating the order.

    Returns every step's wall and CPU seconds and loss per variant, and each round's median per variant
    (variants timed minutes apart share the machine's load only round by round).
    """
    timed = {key: {w.name: [] for w in workers} for key in ("seconds", "cpu_seconds", "losses")}
    timed["rounds"] = []
    for r in range(rounds):
        medians = {}
        for w in workers[r % len(workers):] + workers[: r % len(workers)]:
            time.sleep(0.5)  # let the previous worker's threads go idle
            result = w.time(steps)
            for key in ("seconds", "cpu_seconds", "losses"):
                timed[key][w.name] += result[key]
            medians[w.name] = statistics.median(result["seconds"])
        timed["rounds"].append(medians)
        print(f"round {r + 1}/{rounds} (load {os.getloadavg()[0]:.1f}): " + ", ".join(
            f"{w.name} {w.batch * w.views / medians[w.name]:.1f}" for w in workers), flush=True)
    return timed


def summarize(workers: list[Worker], timed: dict, notes: dict) -> list[dict]:
    """One row per variant: median images/s, quartiles, images per CPU-second, n, batch and note."""
    rows = []
    for w in workers:
        secs = sorted(timed["seconds"][w.name])
        images = w.batch * w.views
        q1, q3 = (statistics.quantiles(secs, n=4)[i] for i in (0, 2)) if len(secs) > 1 else (secs[0], secs[0])
        rows.append({
            "variant": w.name, "batch": w.batch, "views": w.views, "n": len(secs),
            "images_per_second": images / statistics.median(secs),
            "images_per_second_q1": images / q3, "images_per_second_q3": images / q1,
            "images_per_cpu_second": images / statistics.median(timed["cpu_seconds"][w.name]),
            "median_step_seconds": statistics.median(secs), "warmup_seconds": w.warmup["seconds"],
            "note": notes.get(w.name, ""),
        })
    return rows


def round_ratios(timed: dict, ours: dict, torch: dict) -> list[float]:
    """Per round: images/s of `ours` over images/s of `torch` (each round's medians)."""
    scale = (ours["batch"] * ours["views"]) / (torch["batch"] * torch["views"])
    return [scale * r[torch["variant"]] / r[ours["variant"]] for r in timed["rounds"]]


# ------------------------------------------------------------------------------------------------------------
# Where the time goes: TF profiler trace of our step, op time summed by kind


OP_KINDS = [  # (kind, substrings of the op type), first match wins
    ("conv backprop filter", ("Conv2DBackpropFilter",)), ("conv backprop input", ("Conv2DBackpropInput",)),
    ("conv forward", ("Conv2D",)), ("batch norm", ("BatchNorm",)), ("matmul (heads, loss)", ("MatMul",)),
    ("optimizer update", ("ApplyKeras", "ApplyMomentum", "AssignSubVariable", "AssignVariable", "AssignAdd")),
    ("casts (mixed precision)", ("Cast",)), ("relu / add / mul (element-wise)", ("Relu", "AddV2", "AddN", "Mul",
                                                                                "Sub", "Square", "Rsqrt")),
    ("reductions / pooling", ("Mean", "Sum", "Max", "Pool", "Logsumexp")),
]


def _op_kind(op_type: str) -> str:
    for kind, needles in OP_KINDS:
        if any(n in op_type for n in needles):
            return kind
    return "other"


def summarize_trace(logdir: str) -> dict:
    """Sums TF op durations (executor threads of the host plane) by op type and by kind."""
    import glob

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    by_type: dict[str, float] = {}
    for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            names = {k: v.name for k, v in plane.event_metadata.items()}
            for line in plane.lines:
                if not line.name.startswith("tf_Compute"):
                    continue
                for event in line.events:
                    name = names.get(event.metadata_id, "")
                    if ":" in name and "::" not in name:  # 'op_name:OpType' events are TF ops
                        op_type = name.rsplit(":", 1)[1]
                        by_type[op_type] = by_type.get(op_type, 0.0) + event.duration_ps * 1e-12
    by_kind: dict[str, float] = {}
    for op_type, seconds in by_type.items():
        by_kind[_op_kind(op_type)] = by_kind.get(_op_kind(op_type), 0.0) + seconds
    return {"by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
            "by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1]))}


def profile_ours(name: str, batch: int, views: int, steps: int, warmup: int, width: float = 1.0) -> dict:
    """Profiles `steps` steps of our variant after `warmup` steps; returns step times and the op breakdown."""
    import itertools
    import tempfile

    import tensorflow as tf

    run = build_run(recipe_params(batch, views, OURS[name][0], width), tempfile.mkdtemp())
    planned = run.plan[0]
    cached = next(run._train_iterator(planned))
    run._train_iterator = lambda p: itertools.repeat(cached)
    logdir = tempfile.mkdtemp(prefix="supcon_profile_")
    state = {"calls": 0, "seconds": None}

    class _Done(Exception):
        pass

    def channel(record):
        state["calls"] += 1
        if state["calls"] == 1:
            tf.profiler.experimental.start(logdir)
            return steps
        tf.profiler.experimental.stop()
        state["seconds"] = record["seconds"]
        raise _Done

    clock = StepClock(channel)
    clock.pending = warmup
    try:
        run.train_stage(planned, clock)
    except _Done:
        pass
    summary = summarize_trace(logdir)
    wall = sum(state["seconds"])
    return {"variant": name, "batch": batch, "views": views, "steps": steps, "step_seconds": state["seconds"],
            "wall_seconds": wall, "op_seconds_by_kind": summary["by_kind"],
            "op_seconds_by_type": dict(list(summary["by_type"].items())[:25])}


def print_profile(result: dict) -> None:
    total = sum(result["op_seconds_by_kind"].values())
    print(f"profile of ours_{result['variant']}: {result['steps']} steps, wall {result['wall_seconds']:.2f} s, "
          f"op time {total:.2f} s (ops may overlap on the 2 executor threads)")
    for kind, seconds in result["op_seconds_by_kind"].items():
        print(f"  {kind:34s} {seconds / result['steps']:8.3f} s/step  {100 * seconds / total:5.1f} %")


# ------------------------------------------------------------------------------------------------------------
# Machine, JSON results and the README that gathers every benchmark's section

NOTES = "notes.md"  # hand-written, appended to the README as is
SECTIONS = {  # README order: section -> the command that measures it
    "train_step": "python benchmarks/train_step.py",
    "small_scale": "python benchmarks/small_scale.py",
    "small_scale_no_avx512": "python benchmarks/small_scale.py --section small_scale_no_avx512 "
                             "--ours live,cached,live_per_image,live_xla",
    "profile": "python benchmarks/train_step.py --profile fp32,fp32_onednn,bf16_onednn",
    "batch_norm": "python benchmarks/batch_norm.py",
    "loss_curves": "python benchmarks/train_step.py --loss_curves 60 --width 0.25 --batch 64",
    "loss_scale": "python benchmarks/loss_scale.py",
    "input_stall": "python benchmarks/input_stall.py",
    "runner_overhead": "python benchmarks/runner_overhead.py",
}


def machine() -> dict:
    """CPU model and the instruction sets that matter here, cores, memory, load, versions and the git SHA."""
    from importlib import metadata

    info = {"cpu": "?", "flags": [], "cores": os.cpu_count(), "load_average": list(os.getloadavg())}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and info["cpu"] == "?":
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not info["flags"]:
                wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
                info["flags"] = [f for f in line.split(":", 1)[1].split() if f in wanted]
    with open("/proc/meminfo") as f:
        info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    versions = {"python": sys.version.split()[0]}
    for package in ("tensorflow", "tensorflow-cpu", "keras", "torch", "gin-config"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    info["versions"] = versions
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    info["git"] = sha.stdout.strip() + (" (uncommitted changes)" if dirty else "")
    return info


def save_section(name: str, payload: dict, markdown: str, report_dir: str = REPORT_DIR) -> None:
    """Writes reports/benchmarks/<name>.json (results + their markdown section) and refreshes the README."""
    os.makedirs(report_dir, exist_ok=True)
    payload = {**payload, "markdown": markdown, "machine": machine(), "command": " ".join(sys.argv)}
    with open(os.path.join(report_dir, f"{name}.json"), "w") as f:
        json.dump(payload, f, indent=1)
    write_readme(report_dir)


def write_readme(report_dir: str = REPORT_DIR) -> str:
    """reports/benchmarks/README.md: the machine, then each benchmark's latest section."""
    sections = {}
    for name in SECTIONS:
        path = os.path.join(report_dir, f"{name}.json")
        if os.path.exists(path):
            with open(path) as f:
                sections[name] = json.load(f)
    m = machine()
    lines = ["# Speed benchmarks", "",
             "Every figure below comes from the script named in its section; `python benchmarks/<script>.py` "
             "re-measures it and rewrites its section. Sections may come from different machines (machines differ "
             "from session to session, and the same step can differ 4-16x between them): each section's footer "
             "names the CPU, its instruction sets and the load average it was measured on. Compare speeds only "
             "within a section (side by side, one run, one machine).", "",
             f"- This README was last assembled on: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; "
             f"instruction sets: {', '.join(m['flags']) or 'none listed'}",
             "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()), ""]
    for name in SECTIONS:
        if name in sections:
            s = sections[name]
            sm = s["machine"]
            lines += [s["markdown"].rstrip(), "",
                      f"<sub>Command: `{s['command']}`; git {sm['git']}; CPU {sm['cpu']}, {sm['cores']} cores, "
                      f"instruction sets {', '.join(sm['flags']) or 'none listed'}; load average at the end "
                      f"{', '.join(f'{x:.2f}' for x in sm['load_average'])}.</sub>", ""]
        else:
            lines += [f"## {name}", "", f"Not measured yet: `{SECTIONS[name]}`.", ""]
    notes = os.path.join(report_dir, NOTES)
    if os.path.exists(notes):  # hand-written remarks (e.g. run-to-run variation), kept across re-measurements
        with open(notes) as f:
            lines += [f.read().rstrip(), ""]
    text = "\n".join(lines)
    with open(os.path.join(report_dir, "README.md"), "w") as f:
        f.write(text)
    return text


# ------------------------------------------------------------------------------------------------------------
# The three modes


def describe(variant: str) -> str:
    """How a variant is obtained: gin bindings (recipe options) and environment variables."""
    if variant.startswith("ours_"):
        bindings, env = OURS[variant.removeprefix("ours_")]
        parts = [b.removeprefix("train_and_evaluate.") for b in bindings]
        return ", ".join(parts + [f"env {k}={v}" for k, v in env.items()])
    compiled, bf16 = _torch_variants()[variant]
    return ("torch.compile" if compiled else "eager") + (", bf16 autocast, channels-last" if bf16 else ", fp32")


def step_markdown(rows: list[dict], args, speedup: dict) -> str:
    lines = ["## Training step: ours vs PyTorch (SupContrast style), side by side", "",
             f"ResNet-18 (CIFAR stem) + (512, 128) projection, SupCon loss, SGD; batch {args.batch} x "
             f"{args.views} views of 32x32. Workers alternate: {args.rounds} rounds x {args.steps} steps per "
             f"variant after {args.warmup} warm-up steps; median images/s (network inputs: batch x views / "
             "step time) with the interquartile range, and images per CPU-second (all threads; less sensitive "
             "to other load on the machine).", "",
             "| variant | how | batch | images/s (median) | IQR | images/CPU-s | n | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['variant']} | {describe(r['variant'])} | {r['batch']} | {r['images_per_second']:.1f} | "
                     f"{r['images_per_second_q1']:.1f}-{r['images_per_second_q3']:.1f} | "
                     f"{r['images_per_cpu_second']:.1f} | {r['n']} | {r['note']} |")
    lines += ["", f"**speedup_vs_torch: {speedup['ratio']:.3f}** = ours_{speedup['ours']} / {speedup['torch']} "
              f"(medians); the same ratio round by round: median {speedup['round_median']:.3f}, range "
              f"{speedup['round_min']:.3f}-{speedup['round_max']:.3f}."]
    for name, ratio in speedup.get("per_ours", {}).items():
        lines.append(f"- ours_{name} / {speedup['torch']}: {ratio:.3f}")
    return "\n".join(lines)


def speedup_of(rows: list[dict], timed: dict, ours_variant: str | None = None) -> dict:
    """Ours (the best variant, or `ours_variant`) over the fastest PyTorch variant, overall and round by round."""
    ours = [r for r in rows if r["variant"].startswith("ours_")]
    torch = [r for r in rows if r["variant"].startswith("torch_")]
    if not ours or not torch:
        nan = float("nan")
        return {"ratio": nan, "ours": "?", "torch": "?", "round_median": nan, "round_min": nan, "round_max": nan}
    best_ours = (next(r for r in ours if r["variant"] == ours_variant) if ours_variant
                 else max(ours, key=lambda r: r["images_per_second"]))
    best_torch = max(torch, key=lambda r: r["images_per_second"])
    per_round = round_ratios(timed, best_ours, best_torch)
    return {"ratio": best_ours["images_per_second"] / best_torch["images_per_second"],
            "ours": best_ours["variant"].removeprefix("ours_"), "torch": best_torch["variant"],
            "round_median": statistics.median(per_round), "round_min": min(per_round),
            "round_max": max(per_round),
            "per_ours": {r["variant"].removeprefix("ours_"): r["images_per_second"] / best_torch["images_per_second"]
                         for r in ours}}


def run_benchmark(args) -> None:
    ours = [f"ours_{n}" for n in args.ours.split(",") if n]
    torch_names = list(_torch_variants()) if args.torch == "all" else [n for n in args.torch.split(",") if n]
    workers, notes = [], {}
    try:
        for name in ours + torch_names:
            worker, notes[name] = start_variant(name, args)
            workers.append(worker)
            print(f"{name}: warm-up {[round(s, 2) for s in worker.warmup['seconds']]} {notes[name]}", flush=True)
        timed = alternate(workers, args.rounds, args.steps)
    finally:
        for w in workers:
            w.close()
    rows = summarize(workers, timed, notes)
    speedup = speedup_of(rows, timed)
    markdown = step_markdown(rows, args, speedup)
    print(markdown)
    save_section("train_step", {"rows": rows, "speedup": speedup, "timed": timed}, markdown)
    print(f"speedup_vs_torch: {speedup['ratio']:.3f}")


def _torch_variants():
    sys.path.insert(0, HERE)
    import _torch_reference

    return _torch_reference.VARIANTS


def _profile_in_child(name: str, args) -> dict:
    """Profiles one of our variants in a fresh process with that variant's environment."""
    command = [sys.executable, os.path.abspath(__file__), "--profile_child", name, "--batch", str(args.batch),
               "--views", str(args.views), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--width", str(args.width)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, HERE]), TF_CPP_MIN_LOG_LEVEL="2", **OURS[name][1])
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith(PREFIX):
            return json.loads(line[len(PREFIX):])
    raise RuntimeError(f"profile of {name} failed:\n{proc.stderr[-3000:]}")


def run_profile(args) -> None:
    results = [_profile_in_child(name, args) for name in args.profile.split(",")]
    lines = ["## Where our step's time goes (TF profiler)", "",
             f"Batch {args.batch} x {args.views} views; op time summed over the executor threads "
             f"(per step), from `tf.profiler` traces of {args.steps} steps after {args.warmup} warm-up steps.",
             "", "| kind | " + " | ".join(f"ours_{r['variant']} s/step (%)" for r in results) + " |",
             "| --- |" + " --- |" * len(results)]
    kinds = list(dict.fromkeys(k for r in results for k in r["op_seconds_by_kind"]))
    for kind in kinds:
        cells = []
        for r in results:
            total, seconds = sum(r["op_seconds_by_kind"].values()), r["op_seconds_by_kind"].get(kind, 0.0)
            cells.append(f"{seconds / r['steps']:.3f} ({100 * seconds / total:.0f} %)")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("| wall time per step | " + " | ".join(
        f"{r['wall_seconds'] / r['steps']:.3f}" for r in results) + " |")
    for r in results:
        print_profile(r)
    save_section("profile", {"results": results}, "\n".join(lines))


def run_loss_curves(args) -> None:
    """A short run of our step both ways (live pipeline, same seed): float32 and mixed bfloat16."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.warmup = 1
    curves = {}
    for name in (f"ours_{n}" for n in args.curve_variants.split(",")):
        worker = Worker(name, args.batch, args, live=True)
        curves[name] = worker.warmup["losses"] + worker.time(args.loss_curves - 1)["losses"]
        worker.close()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), losses, label=describe(name))
    ax.set(xlabel="step", ylabel="training loss", title=f"SupCon, ResNet-18 x{args.width:g}, batch {args.batch}")
    ax.legend()
    fig.tight_layout()
    os.makedirs(REPORT_DIR, exist_ok=True)
    fig.savefig(os.path.join(REPORT_DIR, "loss_curves.png"), dpi=100)
    fp32, bf16 = curves.values()
    diffs = [abs(a - b) for a, b in zip(fp32, bf16, strict=True)]
    tail = max(1, len(fp32) // 5)
    lines = ["## Mixed precision does not change the result (loss curves)", "",
             f"{args.loss_curves} steps of our step, same seed, live augmentation, ResNet-18 x{args.width:g}, "
             f"batch {args.batch} x {args.views}: {' vs '.join(describe(n) for n in curves)} (the loss math is "
             "float32 either way).", "",
             "![loss curves](loss_curves.png)", "",
             f"| | step 1 | step 10 | mean of the last {tail} steps |", "| --- | --- | --- | --- |"]
    for name, losses in curves.items():
        lines.append(f"| {name} | {losses[0]:.4f} | {losses[min(9, len(losses) - 1)]:.4f} | "
                     f"{statistics.mean(losses[-tail:]):.4f} |")
    lines += ["", f"Largest per-step difference {max(diffs):.4f}; mean {statistics.mean(diffs):.4f}."]
    save_section("loss_curves", {"curves": curves}, "\n".join(lines))
    print("\n".join(lines))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128, help="global batch (samples)")
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--width", type=float, default=1.0, help="ResNet-18 width multiplier")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--ours", default="fp32_onednn,bf16_onednn,fp32", help=f"comma list of {', '.join(OURS)}")
    parser.add_argument("--torch", default="all", help="'all', 'none' or a comma list of variants")
    parser.add_argument("--probe_batch", type=int, default=16)
    parser.add_argument("--max_step_seconds", type=float, default=120.0)
    parser.add_argument("--profile", default="", help="profile these of our variants instead")
    parser.add_argument("--loss_curves", type=int, default=0, help="run N steps of two variants instead")
    parser.add_argument("--curve_variants", default="fp32_onednn,bf16_onednn", help="the two for --loss_curves")
    parser.add_argument("--log_dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "supcon_bench_logs"))
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--profile_child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--live", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch == "none":
        args.torch = ""
    return args


def main(argv=None) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup that closes the workers
    args = parse_args(argv)
    if args.worker.startswith("ours_"):
        ours_worker(args.worker, args.batch, args.views, args.live, args.warmup, args.width)
    elif args.worker:
        torch_worker(args.worker, args.batch, args.views, args.warmup)
    elif args.profile_child:
        result = profile_ours(args.profile_child, args.batch, args.views, args.steps, args.warmup, args.width)
        print(PREFIX + json.dumps(result), flush=True)
    elif args.profile:
        run_profile(args)
    elif args.loss_curves:
        run_loss_curves(args)
    else:
        run_benchmark(args)


if __name__ == "__main__":
    main()
