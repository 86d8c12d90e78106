"""What a grid point will run, printed without training it: `python runner.py RECIPE --dry_run --show_config`.

The runner's side (no TensorFlow): writes the points to a spec file, runs `python -m supcon.main --describe
SPEC.json` (one trainer process for all points; one JSON line per point, as `--validate`; the settings come from
`supcon.train.describe`) and prints `format_settings` for each.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from supcon.experiment import validation


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
    recipe_path: str, points: Sequence, overlays: Sequence[str], gin_params: Sequence[str]
) -> int:
    """Prints the effective settings of `points` (grid.Point) of a recipe; returns 0, or 2 when one is invalid.

    Runs one `python -m supcon.main --describe` process for all points (TensorFlow's start-up is paid once).
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
        results, returncode, stderr = validation.run_spec("supcon.main", spec_path, "--describe")
    if len(results) != len(points):
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        print(f"show_config: failed (python -m supcon.main --describe exited {returncode}): {tail}", file=sys.stderr)
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
