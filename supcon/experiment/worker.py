"""A trainer process that serves many grid points: the runner's side (`Worker`) and the trainer's (`serve`).

One process per job pays TensorFlow's import and first tracing once; requests and replies are JSON lines
(docs/architecture.md has the protocol). No TensorFlow here: the runner imports this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable


@contextlib.contextmanager
def output_to(log: str | None):
    """Appends fds 1 and 2 to `log` while the block runs (nothing changes when `log` is None)."""
    if not log:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def serve(reply_fd: int, handlers: dict[str, Callable[[dict], dict]]) -> int:
    """The trainer's loop: answers requests from stdin until "exit", end of input or a retiring reply."""
    with os.fdopen(reply_fd, "w", buffering=1) as reply:
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            op = request.get("op")
            if op == "exit":
                break
            if op not in handlers:
                raise ValueError(f"unknown worker request {op!r}; expected one of {sorted(handlers)} or 'exit'")
            with output_to(request.get("log")):
                response = handlers[op](request)
            reply.write(json.dumps(response) + "\n")
            reply.flush()
            if response.get("retire"):
                break
    return 0


class Worker:
    """The runner's handle on one serving trainer process (`python -m MODULE --serve --reply_fd N`).

    `log` receives the process's output until its first request (imports, start-up errors).
    """

    def __init__(self, main_module: str, env: dict, log: str):
        read_end, write_end = os.pipe()
        try:
            with open(log, "a") as out:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", main_module, "--serve", "--reply_fd", str(write_end)],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    pass_fds=(write_end,),
                    text=True,
                )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self.replies = os.fdopen(read_end, "r")
        self.points = 0  # train requests answered

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, request: dict) -> dict | None:
        """Sends one request and waits for its reply; None when the process died (see `exit_code`)."""
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.proc.wait()
            return None
        line = self.replies.readline()
        if not line:
            self.proc.wait()
            return None
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            reply = None
        if not isinstance(reply, dict):  # not the protocol: the process is stopped, as one that died
            self.terminate()
            self.proc.wait()
            return None
        if request.get("op") == "train" and "code" in reply:
            self.points += 1
        return reply

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()

    def close(self, timeout: float = 60.0) -> None:
        """Asks the process to exit; kills it if it does not within `timeout` seconds."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError, ValueError):
            self.replies.close()
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin:
                self.proc.stdin.close()
