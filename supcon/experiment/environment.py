"""The runner's process environment (no TensorFlow): TF_CONFIG, this host's task in a multi-host point, and the
environment and CPU threads of the trainer processes it starts."""

from __future__ import annotations

import json
import os
import re

from supcon.experiment.options import ROOT, UsageError

TF_CONFIG_EXAMPLE = '{"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}'


def check_tf_config() -> None:
    """TF_CONFIG, when set, must describe a cluster and this host's task in it (see docs/scale.md: several hosts).

    Raises:
      UsageError: it does not.
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"TF_CONFIG is not JSON ({e.msg} at column {e.colno}); expected {TF_CONFIG_EXAMPLE}") from None
    if config == {}:
        return
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not cluster:
        raise UsageError(f"TF_CONFIG needs a 'cluster' dict of task lists; expected {TF_CONFIG_EXAMPLE}")
    for kind, hosts in cluster.items():
        if not isinstance(hosts, list) or not hosts or not all(
            isinstance(h, str) and re.fullmatch(r"[^\s:]+:\d+", h) for h in hosts
        ):
            raise UsageError(f"TF_CONFIG cluster.{kind} must be a non-empty list of 'host:port'; got {hosts!r}")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        got = task.get("type") if isinstance(task, dict) else task
        raise UsageError(f"TF_CONFIG task.type must be one of the cluster's {', '.join(cluster)}; got {got!r}")
    index, hosts = task.get("index", 0), cluster[task["type"]]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(hosts):
        raise UsageError(
            f"TF_CONFIG task.index must be an integer from 0 to {len(hosts) - 1} (cluster.{task['type']} "
            f"has {len(hosts)}); got {index!r}"
        )


def secondary_worker() -> str:
    """'worker-1' etc. when TF_CONFIG makes this host a non-chief task of a multi-host point."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
        kind, index = task.get("type", "chief"), int(task.get("index", 0) or 0)
    except (ValueError, AttributeError, TypeError):
        return ""
    return "" if kind == "chief" or (kind == "worker" and index == 0) else f"{kind}-{index}"


def child_env(threads: int) -> dict:
    """The environment of trainer subprocesses: this process's (SUPCON_AUTO_PRECISION included: the runner sets it
    from --auto_precision), SUPCON_THREADS and the repo on PYTHONPATH."""
    env = dict(os.environ, SUPCON_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return env


def threads_per_job(jobs: int) -> int:
    """The CPU threads each of `jobs` trainer processes gets: this process's cores // jobs, at least 1."""
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    return max(1, cores // jobs)
