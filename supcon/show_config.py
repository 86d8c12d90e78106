"""What a grid point will run, without training it: `python runner.py RECIPE --dry_run --show_config`.

For each point, the effective settings that gin hands the trainer, per stage: optimizer and its constants, base
and peak learning rate (peak = base x global batch / 256, as the trainer computes it), schedule, warmup, epochs,
weight decay (coefficient, how it is applied, the parts it covers and what it excludes), augmenter and its
options, views, loss weights, batch norm; and for the run: encoder, heads, loss options, memory, warm start,
data, evaluation preprocessing and topology.

Two halves:
* `settings(cfg)` runs in a trainer-like process (TensorFlow and the gin registry imported): `cfg` is the
  root's checked arguments (`supcon.train.validate_config`), evaluated in the point's method scope exactly as for
  the runner's validation (`supcon.main.parse`, `method_scope`). Configured callables (`@pretrain/lars`,
  `@linear/autoaugment`, `@resnet`) are described by their signature defaults overridden by the gin bindings in
  the scope they are called in.
* `show(...)` is the runner's side (no TensorFlow): it writes the points to a spec file, runs
  `python -m supcon.show_config SPEC.json` (one process for all points; one JSON line per point, as
  `supcon.main --validate`) and prints `format_settings` for each.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

SKIPPED_ARGS = ("name", "learning_rate", "image", "seed", "num_classes")  # per call, not settings
ROOT_KEYS = (
    "dataset", "train_split", "eval_split", "max_examples", "batch_size", "eval_batch_size", "topology",
    "num_devices", "tpu_name", "mixed_precision", "seed", "memory_size", "normalize_embedding",
    "stop_gradient_before_projection_head", "stop_gradient_before_classification_head", "label_noise",
    "init_checkpoint", "init_parts", "knn_k",
)  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# The trainer's side (gin registry and TensorFlow loaded)


def _reference_scope(fn: Callable) -> list[str] | None:
    """The scope of a gin reference written with one (`@pretrain/lars` -> ['pretrain']), else None.

    gin 0.5 wraps a scoped reference in a function whose closure holds the scope components.
    """
    code = getattr(fn, "__code__", None)
    if code is not None and "scope_components" in code.co_freevars and fn.__closure__:
        return list(fn.__closure__[code.co_freevars.index("scope_components")].cell_contents)
    return None


def plain(value: Any) -> Any:
    """A JSON-ready copy of a setting: callables by name, tuples as lists."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if callable(value):
        return describe_callable(value)["name"]
    return repr(value)


def describe_callable(fn: Callable | None) -> dict | None:
    """{'name': '@scope/name', option: value, ...}: a configured callable with its effective options.

    The options are the function's signature defaults overridden by the gin bindings that apply where it is
    called: in the scope of its reference (`@pretrain/lars`), else in the current scope (the method's).
    """
    if fn is None:
        return None
    import gin
    from gin import config

    configurable = config._inverse_lookup(fn, allow_decorators=True)
    if configurable is None:
        return {"name": getattr(fn, "__name__", repr(fn))}
    scope = _reference_scope(fn)
    if scope is None:
        scope = config.current_scope()
    options = {
        k: p.default
        for k, p in inspect.signature(configurable.wrapped).parameters.items()
        if p.default is not inspect.Parameter.empty and k not in SKIPPED_ARGS
    }
    with gin.config_scope(list(scope)):
        bound = gin.get_bindings(configurable.selector)
    options.update({k: v for k, v in bound.items() if k not in SKIPPED_ARGS})
    name = "@" + "/".join([*scope, configurable.name]) if _reference_scope(fn) else "@" + configurable.name
    return {"name": name, **{k: plain(v) for k, v in options.items()}}


def _weight_decay(p, cfg: dict, optimizer) -> dict:
    """Coefficient, where it is applied, the parts it covers and what it never covers (Run._parts_variables)."""
    from supcon import optim

    s = p.stage
    # A part trains when a loss of this stage reaches it: the classifier through the cross-entropy, the projection
    # head through the contrastive loss, the encoder through either (the cross-entropy unless a stop-gradient).
    reaches_encoder = s.contrastive_weight > 0 or (
        s.cross_entropy_weight > 0 and not cfg["stop_gradient_before_classification_head"])
    # (present, decayed: in the optimizer's variables and flagged, as Run._parts_variables, trained)
    parts = {
        "encoder": (True, s.train_encoder and s.decay_encoder, s.train_encoder and reaches_encoder),
        "projection_head": (bool(cfg["projection_head"]), s.train_encoder and s.decay_projection_head,
                            s.train_encoder and s.contrastive_weight > 0),
        "classification_head": (True, s.decay_classification_head, s.cross_entropy_weight > 0),
    }
    trained = [k for k, (present, _, trains) in parts.items() if present and trains]
    decayed = [k for k, (present, decay, _) in parts.items() if present and decay]
    return {
        "coefficient": s.weight_decay,
        "applied": "inside LARS (grad += wd * w)" if isinstance(optimizer, optim.LARS) else "explicit L2 term wd * sum(w^2)/2",
        "parts": decayed if s.weight_decay else [],
        "excluded": ["batch norm"] + ([] if s.decay_bias else ["biases"]),
        "trained": trained,
    }


def _schedule(p) -> dict:
    from supcon import optim

    s = p.stage
    schedule = optim.learning_rate_schedule(
        s.base_learning_rate, p.batch_size, 1.0, s.epochs, s.warmup_epochs, s.decay, s.decay_rate,
        s.boundary_epochs, s.epochs_per_decay,
    )  # as Run._build_optimizers; steps_per_epoch does not change the peak
    found = {"decay": s.decay}
    if s.decay == "exponential":
        found.update(decay_rate=s.decay_rate, epochs_per_decay=s.epochs_per_decay)
    elif s.decay == "piecewise":
        found.update(decay_rate=s.decay_rate, boundary_epochs=list(s.boundary_epochs))
    return {"peak_learning_rate": schedule.peak_learning_rate, **found}


def stage_settings(p, cfg: dict) -> dict:
    """One planned stage's effective settings."""
    s = p.stage
    optimizer = s.optimizer(learning_rate=0.1)  # as the trainer builds it (no variables until build)
    schedule = _schedule(p)
    return {
        "name": s.name,
        "epochs": s.epochs,
        "batch_size": p.batch_size,
        "warmup_epochs": s.warmup_epochs,
        "optimizer": describe_callable(s.optimizer),
        "optimizer_class": type(optimizer).__name__,
        "base_learning_rate": s.base_learning_rate,
        "peak_learning_rate": schedule.pop("peak_learning_rate"),
        "schedule": schedule,
        "weight_decay": _weight_decay(p, cfg, optimizer),
        "augmenter": describe_callable(s.augmenter) or {"name": "@identity_augment"},
        "num_views": s.num_views,
        "contrastive_weight": s.contrastive_weight,
        "cross_entropy_weight": s.cross_entropy_weight,
        "label_smoothing": s.label_smoothing,
        "train_encoder": s.train_encoder,
        "encoder_batch_norm": s.encoder_batch_norm,
    }


def settings(cfg: dict) -> dict:
    """Everything a point will run with, from the root's checked arguments (call in the method scope)."""
    from supcon import stages, train

    loss = cfg["contrastive_loss"]
    run = {k: plain(cfg[k]) for k in ROOT_KEYS if k in cfg}
    run.update(
        encoder=describe_callable(cfg["encoder"]),
        projection_head=describe_callable(cfg["projection_head"]),
        classification_head=describe_callable(train.configured(cfg["classification_head"])),
        contrastive_loss=None if loss is None else plain(getattr(loss, "options", {"name": repr(loss)})),
        normalize=describe_callable(train.configured(cfg["normalize"])),
        eval_preprocess=describe_callable(train.configured(cfg["eval_preprocess"])),
    )
    planned = stages.plan(list(cfg["stages"]), 1, cfg["batch_size"])
    return {"run": run, "stages": [stage_settings(p, cfg) for p in planned]}


def describe_points(spec_path: str) -> list[dict]:
    """{"name", "error", "settings"} per point of a spec file (as `supcon.main --validate` reads it)."""
    import gin

    from supcon import main, train

    with open(spec_path) as f:
        points = json.load(f)
    results = []
    for point in points:
        found, error = None, None
        try:
            main.parse(point.get("gin_files", []), point.get("gin_params", []))
            with gin.config_scope(main.method_scope()):
                found = settings(train.validate_config())
        except Exception as e:  # noqa: BLE001 - every error becomes the point's one-line message
            error = main.one_line(e)
        results.append({"name": point.get("name"), "error": error, "settings": found})
    return results


def _main(argv: Sequence[str]) -> int:
    """`python -m supcon.show_config SPEC.json`: one JSON line per point; 0 iff every point is valid."""
    if len(argv) != 2:
        print("usage: python -m supcon.show_config SPEC.json", file=sys.stderr)
        return 2
    from supcon import main

    main._import_tensorflow_quietly()
    main._register()
    results = describe_points(argv[1])
    for result in results:
        print(json.dumps(result), flush=True)
    return 1 if any(r["error"] for r in results) else 0


# ------------------------------------------------------------------------------------------------------------
# The runner's side (no TensorFlow)


def _options(found: dict | None) -> str:
    if not found:
        return "none"
    rest = ", ".join(f"{k}={_short(v)}" for k, v in found.items() if k != "name")
    return f"{found.get('name', '?')}({rest})"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "(" + ", ".join(_short(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def format_stage(s: dict) -> list[str]:
    """Lines describing one stage."""
    wd = s["weight_decay"]
    decay = (
        f"weight decay {_short(wd['coefficient'])} on {', '.join(wd['parts'])}, {wd['applied']}; "
        f"never {' or '.join(wd['excluded'])}" if wd["parts"] else "no weight decay"
    )
    schedule = ", ".join(f"{k} {_short(v)}" for k, v in s["schedule"].items())
    ratio = f"x{s['batch_size']}/256"
    return [
        f"    stage {s['name']}: {_short(s['epochs'])} epochs at batch {s['batch_size']}, "
        f"warmup {_short(s['warmup_epochs'])} epochs",
        f"      optimizer {_options(s['optimizer'])} [{s['optimizer_class']}]",
        f"      learning rate: base {_short(s['base_learning_rate'])} -> peak {_short(s['peak_learning_rate'])} "
        f"({ratio}); {schedule}",
        f"      {decay}; trains {', '.join(wd['trained'])}",
        f"      augmenter {_options(s['augmenter'])}, {s['num_views']} view(s)",
        f"      loss weights: contrastive {_short(s['contrastive_weight'])}, cross-entropy "
        f"{_short(s['cross_entropy_weight'])} (label smoothing {_short(s['label_smoothing'])}); encoder "
        f"{'trained' if s['train_encoder'] else 'frozen'}, batch norm {s['encoder_batch_norm']}",
    ]


def format_settings(name: str, found: dict) -> str:
    """A point's settings as indented lines for the console."""
    run = found["run"]
    lines = [
        f"  {name}",
        f"    data: {run['dataset']} (train {run['train_split']}, eval {run['eval_split']}), batch {run['batch_size']}, "
        f"seed {run['seed']}; topology {run['topology']}"
        + (f" ({run['tpu_name'] or 'TPU_NAME unset'})" if run["topology"] == "tpu" else "")
        + f", mixed precision {run['mixed_precision']}",
        f"    encoder {_options(run['encoder'])}",
        f"    projection head {_options(run['projection_head'])}; classifier {_options(run['classification_head'])}",
        f"    heads read the {'L2-normalised' if run['normalize_embedding'] else 'un-normalised'} embedding; "
        f"stop-gradient before projection {run['stop_gradient_before_projection_head']}, before classifier "
        f"{run['stop_gradient_before_classification_head']}",
        f"    contrastive loss: {_options(run['contrastive_loss'])}; memory queue {run['memory_size']}",
        f"    eval: {_options(run['eval_preprocess'])}; input {_options(run['normalize'])}",
    ]
    if run.get("init_checkpoint"):
        lines.append(f"    warm start: {', '.join(run['init_parts'])} from {run['init_checkpoint']}")
    for stage in found["stages"]:
        lines += format_stage(stage)
    return "\n".join(lines)


def show(
    recipe_path: str, points: Sequence, overlays: Sequence[str], gin_params: Sequence[str], env: dict
) -> int:
    """Prints the effective settings of `points` (grid.Point) of a recipe; returns 0, or 2 when one is invalid.

    Runs one `python -m supcon.show_config` process for all points (TensorFlow's start-up is paid once).
    """
    with tempfile.TemporaryDirectory(prefix="supcon-show-") as tmp:
        spec, names = [], {}
        for i, point in enumerate(points):
            bindings = os.path.join(tmp, f"point{i}.gin")
            with open(bindings, "w") as f:
                f.write(point.gin_text())
            names[bindings] = f"<bindings of {point.slug}>"
            spec.append({"name": point.slug, "gin_files": [recipe_path, bindings, *overlays],
                         "gin_params": list(gin_params)})
        spec_path = os.path.join(tmp, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        proc = subprocess.run(
            [sys.executable, "-m", "supcon.show_config", spec_path], capture_output=True, text=True, env=env
        )
    results = []
    for line in proc.stdout.splitlines():
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    if len(results) != len(points):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"show_config: failed (python -m supcon.show_config exited {proc.returncode}): {tail}", file=sys.stderr)
        return 2
    print("effective settings (what each point runs; peak LR = base LR x global batch / 256):")
    code = 0
    for result in results:
        if result["error"]:
            message = result["error"]
            for path, name in names.items():
                message = message.replace(path, name)
            print(f"  {result['name']}: invalid: {message}")
            code = 2
        else:
            print(format_settings(result["name"], result["settings"]))
    return code


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
