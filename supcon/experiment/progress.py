"""The runner's console progress: one line per running point, from the point's own log (no TensorFlow).

The trainer prints `step S/T [stage] loss L lr X N img/s ETA D` into the point's log.txt every log_every_steps
(`supcon.train.run.Logger`), `stage NAME: steps A..B of T` when a stage starts and `eval at step S: ...` after an
evaluation. The runner follows each running point's log from where it ended when the point started (a log
holds every attempt), so the same progress shows whether the point trains in a served trainer process or a
one-shot one, and with --jobs N.

Two displays:
- `bar` (the default where the runner's stdout is a terminal): one status line redrawn in place with a
  carriage return: a bar with stage, step/total, loss and ETA when one point runs; with --jobs N, one compact
  segment per running point on that line, cut to the terminal's width. Runner messages ("done", "failed")
  print above it.
- `lines` (logs, CI, a pipe): a plain line per running point every `every` seconds, when it moved on.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
import threading
import time
from typing import TextIO

MODES = ("auto", "bar", "lines", "off")
STEP_RE = re.compile(r"^step (\d+)/(\d+) \[([^\]]+)\] loss (\S+)(?:.*\bETA (\S+))?")
STAGE_RE = re.compile(r"^stage (\S+): steps (\d+)\.\.(\d+) of (\d+)")
EVAL_RE = re.compile(r"^eval at step (\d+)")
BAR_WIDTH = 20


@dataclasses.dataclass
class State:
    """What a point's log says so far."""

    stage: str = ""
    step: int = 0
    total: int = 0
    loss: str = ""
    eta: str = ""
    evaluating: bool = False

    def update(self, line: str) -> bool:
        """Reads one log line; True when it changed the state."""
        if match := STEP_RE.match(line):
            step, total, stage, loss, eta = match.groups()
            self.step, self.total, self.stage, self.loss, self.eta = int(step), int(total), stage, loss, eta or ""
            self.evaluating = self.step >= self.total  # the last step: the final evaluation runs next
            return True
        if match := STAGE_RE.match(line):
            self.stage, self.step, self.total = match.group(1), int(match.group(2)), int(match.group(4))
            self.loss, self.eta, self.evaluating = "", "", False  # the previous stage's
            return True
        if EVAL_RE.match(line):
            self.evaluating = True
            return True
        return False

    def text(self, bar: bool = False) -> str:
        """`pretrain 340/5468 loss 0.5328 ETA 13m28s` (with a bar before the steps when `bar`)."""
        if not self.total:
            return "starting"
        steps = f"{self.step}/{self.total}"
        if bar:
            done = min(BAR_WIDTH, BAR_WIDTH * self.step // self.total)
            tip = ">" if done < BAR_WIDTH else ""
            steps = f"[{'=' * done}{tip}{' ' * (BAR_WIDTH - done - len(tip))}] {steps}"
        parts = [self.stage, steps]
        parts += [f"loss {self.loss}"] if self.loss else []
        return " ".join(parts + self._eta())

    def _eta(self) -> list[str]:
        return ["evaluating"] if self.evaluating else [f"ETA {self.eta}"] if self.eta else []

    def short(self, level: int) -> str:
        """Shorter texts for a status line shared by several points: 1 `pretrain 6% ETA 13m28s`, 2 `6% ETA
        13m28s` (0: `text()`)."""
        if level == 0 or not self.total:
            return self.text()
        percent = f"{100 * self.step // self.total}%"
        return " ".join(([self.stage] if level == 1 else []) + [percent] + self._eta())


class LogFollower:
    """Reads the lines appended to a file since it was created (from the file's size at that moment)."""

    def __init__(self, path: str):
        self.path = path
        self.offset = _size(path)
        self.partial = b""

    def lines(self) -> list[str]:
        size = _size(self.path)
        if size < self.offset:  # replaced or truncated: read it from the start
            self.offset, self.partial = 0, b""
        if size == self.offset:
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(size - self.offset)
        except OSError:
            return []
        self.offset += len(data)
        *complete, self.partial = (self.partial + data).split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in complete]


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


@dataclasses.dataclass
class _Point:
    index: str  # "[2/6]"
    name: str  # the point's slug
    follower: LogFollower
    state: State = dataclasses.field(default_factory=State)
    shown: tuple = ()  # (stage, step, evaluating) last printed in `lines` mode
    shown_at: float = 0.0


def resolve_mode(mode: str, stream: TextIO) -> str:
    """`auto` -> `bar` on a terminal (not TERM=dumb), else `lines`; other modes as given."""
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}; got {mode!r}")
    if mode != "auto":
        return mode
    tty = hasattr(stream, "isatty") and stream.isatty()
    return "bar" if tty and os.environ.get("TERM", "") != "dumb" else "lines"


class Display:
    """The runner's console: its messages, and the progress of the running points (see the module docstring).

    Thread-safe: the runner's job threads call `message`, `add` and `remove`; `start` runs a thread that reads
    the logs and redraws every `tick` seconds.
    """

    def __init__(self, mode: str = "auto", every: float = 30.0, stream: TextIO | None = None, tick: float = 0.5):
        self.stream = stream or sys.stdout
        self.mode = resolve_mode(mode, self.stream)
        self.every = every
        self.tick = tick
        self.points: dict[str, _Point] = {}
        self.lock = threading.Lock()
        self.status = ""  # the status line on the terminal now ('bar' mode)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.mode != "off" and self.thread is None:
            self.thread = threading.Thread(target=self._run, daemon=True, name="progress")
            self.thread.start()

    def close(self) -> None:
        """Stops the thread and clears the status line."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        with self.lock:
            self._clear()
            self.stream.flush()

    def message(self, text: str) -> None:
        """Prints a line of the runner's (above the status line on a terminal)."""
        with self.lock:
            self._clear()
            self.stream.write(text + "\n")
            self._draw()
            self.stream.flush()

    def add(self, key: str, index: str, name: str, log: str) -> None:
        """Starts following the log of the point `name` (shown as `index name`), from the log's current end."""
        with self.lock:
            self.points[key] = _Point(index, name, LogFollower(log), shown_at=time.time())

    def remove(self, key: str) -> None:
        with self.lock:
            self.points.pop(key, None)
            self._clear()
            self._draw()
            self.stream.flush()

    def poll(self) -> None:
        """Reads the points' new log lines and shows their progress (as the thread does every tick)."""
        with self.lock:
            for point in self.points.values():
                for line in point.follower.lines():
                    point.state.update(line)
            if self.mode == "bar" and self.status != self.status_line(_columns()):
                self._clear()
                self._draw()
            elif self.mode == "lines":
                self._print_lines()
            self.stream.flush()

    def _run(self) -> None:
        while not self.stop.wait(self.tick):
            self.poll()

    def _print_lines(self) -> None:
        now = time.time()
        for point in self.points.values():
            state = point.state
            seen = (state.stage, state.step, state.evaluating)
            if state.total and seen != point.shown and now - point.shown_at >= self.every:
                self.stream.write(f"{point.index} {point.name}  {state.text()}\n")
                point.shown, point.shown_at = seen, now

    def status_line(self, width: int) -> str:
        """The terminal's status line for the running points, at most `width - 1` characters.

        One point: `[2/6] slug  stage [===>   ] step/total loss L ETA D` (the slug cut first when narrow).
        Several: `[2/6] slug: stage step/total loss L ETA D | [3/6] ...`, shortened as the width needs: without
        the slugs (the runner's "running" lines name them), then `[2/6] stage 6% ETA D`, then `[2/6] 6% ETA D`.
        """
        points = list(self.points.values())
        if not points:
            return ""
        if len(points) == 1:
            p = points[0]
            return _segment(f"{p.index} {p.name}", "  ", p.state.text(bar=True), width - 1)
        for level in range(4):
            text = " | ".join(
                f"{p.index} {p.name}: {p.state.text()}" if level == 0 else f"{p.index} {p.state.short(level - 1)}"
                for p in points
            )
            if len(text) <= width - 1:
                return text
        return _fit(text, width - 1)

    def _clear(self) -> None:
        if self.status:
            self.stream.write("\r\x1b[K")
            self.status = ""

    def _draw(self) -> None:
        if self.mode != "bar":
            return
        self.status = self.status_line(_columns())
        if self.status:
            self.stream.write(self.status)


def _columns() -> int:
    """The terminal's width (100 where it is unknown)."""
    return shutil.get_terminal_size((100, 24)).columns


def _fit(text: str, width: int) -> str:
    """`text` cut to `width` characters, ending in '...' when cut."""
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def _segment(label: str, sep: str, status: str, width: int) -> str:
    """`label + sep + status` in `width` characters: the label (the slug) is cut first, then the status."""
    room = width - len(sep) - len(status)
    if room < len(label):
        label = _fit(label, max(room, min(len(label), 12)))
    return _fit(label + sep + status, width)
