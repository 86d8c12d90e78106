"""The runner's options as plain values, the repository files they refer to, and the error a bad one gives.

runner.py builds `Options` from its absl flags (docs/running.md lists them); the modules of this package take it,
or single values of it, as arguments and never read flags themselves. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
SMOKE_GIN = os.path.join(ROOT, "recipes", "smoke.gin")  # the --smoke overlay
RUNS_DIR = "runs"  # --runs_dir's default
REPORT_DIR = "reports"  # --report_dir's default


class UsageError(Exception):
    """A bad flag, environment, recipe or point: printed as one line, exit code 2, nothing written."""


@dataclasses.dataclass(frozen=True)
class Options:
    """The runner's flags (runner.py), one field per flag of the same name (`gin_params`: --gin_param)."""

    gin_params: tuple[str, ...] = ()
    smoke: bool = False
    dry_run: bool = False
    show_config: bool = False
    jobs: int = 1
    shard: str | None = None
    runs_dir: str = RUNS_DIR
    report_dir: str = REPORT_DIR
    only: tuple[str, ...] = ()
    report: bool = True
    claim_timeout: float = 600.0
    reuse_process: bool = True
    progress: str = "auto"
    progress_every: float = 30.0
    eval_only: bool = False
    report_only: bool = False
    auto_precision: str = "hardware"
    main_module: str = "supcon.main"
