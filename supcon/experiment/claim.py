"""Atomic claims on run directories, so that concurrent runners train each grid point once.

No TensorFlow here: the runner imports it.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

from supcon import workdir

HOST = socket.gethostname()


class Claim:
    """An exclusive, atomic claim on a run directory (`claim.json`, created with O_CREAT | O_EXCL).

    The holder refreshes its time while the point trains. A claim is stale when it is older than
    `timeout` seconds, or when it comes from this host and neither its runner nor its trainer process
    is alive; a stale claim is taken over under a lock file, so only one runner wins.
    """

    def __init__(self, run_dir: str, timeout: float):
        self.path = os.path.join(run_dir, workdir.CLAIM)
        self.timeout = timeout
        self.token = uuid.uuid4().hex
        self.child_pid = None

    def _record(self) -> dict:
        return {
            "host": HOST,
            "pid": os.getpid(),
            "child_pid": self.child_pid,
            "time": time.time(),
            "token": self.token,
        }

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self._record()))
        return True

    def _read(self) -> dict | None:
        """The current claim; {} while its writer has not filled it in; None if there is none."""
        if not os.path.exists(self.path):
            return None
        return workdir.read_json(self.path, {}) or {}

    def _age(self, claim: dict) -> float:
        stamp = claim.get("time")
        if not isinstance(stamp, int | float):
            try:
                stamp = os.path.getmtime(self.path)
            except FileNotFoundError:
                return float("inf")
        return time.time() - stamp

    def _stale(self, claim: dict) -> bool:
        if claim.get("host") == HOST and claim.get("pid"):
            pids = [p for p in (claim.get("pid"), claim.get("child_pid")) if isinstance(p, int)]
            if not any(_alive(p) for p in pids):
                return True
        return self._age(claim) > self.timeout

    def holder(self) -> str:
        """Who holds a live claim ('host:pid, 3 s ago'), or '' when it is free or stale."""
        claim = self._read()
        if claim is None or self._stale(claim):
            return ""
        return f"{claim.get('host', '?')}:{claim.get('pid', '?')}, {self._age(claim):.0f} s ago"

    def acquire(self) -> bool:
        """Claims the run directory; takes over a stale claim. False when another runner holds it."""
        if self._create():
            return True
        lock = self.path + ".lock"
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            if time.time() - _mtime(lock) > self.timeout:  # a runner died while taking over
                _remove(lock)
            return False
        try:
            claim = self._read()
            if claim is not None and not self._stale(claim):
                return False
            _remove(self.path)
            return self._create()
        finally:
            _remove(lock)

    def refresh(self) -> bool:
        """Renews the claim's time; False if another runner has taken it over."""
        if (self._read() or {}).get("token") != self.token:
            return False
        workdir.write_json_atomic(self.path, self._record())
        return True

    def release(self) -> None:
        if (self._read() or {}).get("token") == self.token:
            _remove(self.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except FileNotFoundError:
        return time.time()


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
