"""Training the planned points (no TensorFlow): trainer processes, up to --jobs at once, each point under a claim
refreshed while it trains; copies from other recipes' run dirs and run records (grid.reuse_from); finished points scored in eval mode; each
point's outcome printed as it ends. SIGTERM stops the trainers as Ctrl-C does.

A job's points go one after another to a serving trainer process (`supcon.experiment.worker`) or, with
--noreuse_process or TF_CONFIG, to a `python -m supcon.main` process each.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time

from supcon import workdir
from supcon.experiment import grid, progress, reuse, sharing
from supcon.experiment.claim import HOST, Claim
from supcon.experiment.environment import child_env, secondary_worker, threads_per_job
from supcon.experiment.outcome import EVALUATED, NOT_RUN, Outcome, failure_reason
from supcon.experiment.plan import UNUSABLE, Plan, point_record, same_params
from supcon.experiment.shown import command_path, count, rel
from supcon.experiment.worker import Worker
from supcon.robust import spec as corruption_spec

POINT_GIN = "point.gin"  # the point's bindings as a gin file, in its run directory
EVAL_MODE_PARAM = "train_and_evaluate.mode = 'eval'"  # how a finished point is scored again


def _interrupt(signum: int, frame) -> None:
    """SIGTERM (a scheduler's or `kill`'s stop) takes the path of Ctrl-C: the trainers are stopped and the points
    left to resume, instead of the runner dying alone while its trainers train on."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_sigterm() -> None:
    """Makes SIGTERM raise KeyboardInterrupt in the main thread, as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _interrupt)


def copy_point(plan: Plan, point: grid.Point, claim_timeout: float) -> bool:
    """Copies the point's planned source run dir into its run dir with this recipe's point.json (`point_record`,
    the source's gin_files, `copied_from`); False when another runner got there first.

    Raises:
      reuse.CopyError: the copy failed or the source no longer qualifies (one line; nothing is left behind).
    """
    source = plan.copies[point.id]

    def record(theirs: dict) -> dict:
        return {**point_record(plan, point, theirs.get("gin_files", [])), reuse.COPIED_FROM: command_path(source)}

    return reuse.copy_source(source, plan.run_dir(point), plan.settings[point.id], bool(plan.overlays),
                             same_params(plan), record, claim_timeout)


def copy_record_point(plan: Plan, point: grid.Point) -> bool:
    """Copies the point's planned source run record (another recipe's, beside its report) into this recipe's
    records (`Plan.record_dir`) with this recipe's point.json (`point_record`, the source's gin_files,
    `copied_from`; its paths portable, as the reporter writes records); False when a finished record of the point is there already (another runner's).

    Raises:
      reuse.CopyError: the copy failed or the source no longer qualifies (one line; nothing is left behind).
    """
    source = plan.record_copies[point.id]
    stem = os.path.basename(os.path.dirname(os.path.dirname(source)))  # <report_dir>/<stem>/runs/<slug>

    def record(theirs: dict) -> dict:  # with no machine's paths, as every record (workdir.portable_point)
        mine = {**point_record(plan, point, theirs.get("gin_files", [])), reuse.COPIED_FROM: command_path(source)}
        return workdir.portable_point(mine, os.getcwd())

    return reuse.copy_record(source, plan.record_dir(point), stem, plan.settings[point.id], bool(plan.overlays),
                             same_params(plan), record, point.id)


class Launcher:
    """Runs points in trainer processes (up to `jobs` at once), holding and refreshing their claims.

    With `reuse`, each job sends its points to a long-lived serving trainer process (supcon.experiment.worker), starting
    one when none is idle; `workers` are processes already started (the validator). Else one subprocess per
    point. `display` prints the runner's messages and follows each running point's log for its progress.
    """

    def __init__(self, plan: Plan, jobs: int, main_module: str, claim_timeout: float,
                 reuse: bool = False, workers: tuple = (), display: progress.Display | None = None,
                 eval_only: bool = False):
        self.plan = plan
        self.eval_only = eval_only
        self.jobs = jobs
        self.main_module = main_module
        self.claim_timeout = claim_timeout
        self.threads = threads_per_job(jobs)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.active: dict[str, tuple[Claim, subprocess.Popen]] = {}
        self.lost: set[str] = set()  # run dirs whose claim another runner took over
        self.pretraining: dict[str, str] = {}  # grid.share_pretraining: key -> the run dir training it here now
        self.secondary = secondary_worker()
        self.reuse = reuse
        self.idle: list[Worker] = list(workers)
        self.workers: list[Worker] = list(workers)
        self.display = display or progress.Display("off")

    def say(self, n: int, verb: str, point: grid.Point, text: str = "") -> None:
        self.display.message(f"[{n}/{len(self.plan.points)}] {verb:<7} {point.slug}{text}")

    def run(self) -> list[Outcome]:
        beat = threading.Thread(target=self._heartbeat, daemon=True)
        beat.start()
        self.display.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs) as pool:
                points = list(enumerate(self.plan.points, 1))
                futures = {i: pool.submit(self.run_point, *points[i]) for i in self._start_order()}
                try:
                    outcomes = [futures[i].result() for i in range(len(points))]
                except KeyboardInterrupt:
                    self.stop.set()
                    self._terminate_all()
                    outcomes = [futures[i].result() for i in range(len(points))]
        finally:
            self.stop.set()
            self.display.close()
            for worker in self.workers:
                worker.close()
        return outcomes

    def _start_order(self) -> list[int]:
        """Indices of the plan's points in the order the jobs take them: the grid's, except that with several jobs
        and grid.share_pretraining every pretraining's first point comes before the points that could share it
        (`sharing.first_of_each_pretraining`)."""
        if self.jobs < 2 or not self.plan.trainer_recipe.share_pretraining:
            return list(range(len(self.plan.points)))
        keys = [sharing.pretraining_hash(self.plan.settings[p.id]) for p in self.plan.points]
        return sharing.first_of_each_pretraining(keys)

    def _await_source(self, key: str, gin_params: list, run_dir: str,
                      poll: float = 2.0) -> tuple[str, str, int] | None:
        """`sharing.find_source`, after waiting while another point of this runner trains the same pretraining (its
        stage checkpoint is the source then; a job would otherwise train that pretraining again). None when there
        is no source and no such point: the point then trains the pretraining itself, and the points of this
        runner that share it wait for it. None once stopped."""
        said = False
        while not self.stop.is_set():
            found = sharing.find_source(self.plan.runs_root, key, gin_params, run_dir)
            if found is not None:
                return found
            with self.lock:
                training = self.pretraining.setdefault(key, run_dir)
            if training == run_dir:
                return None
            if not said:
                self.display.message(f"waiting for the pretraining of {rel(training)} to start {rel(run_dir)} "
                                     "from it (grid.share_pretraining)")
                said = True
            time.sleep(poll)
        return None

    def run_point(self, n: int, point: grid.Point) -> Outcome:
        run_dir = self.plan.run_dir(point)
        if self.stop.is_set():
            return Outcome(point, "interrupted", "not started")
        if point.slug in self.plan.unusable:  # never trained over, and its result.json never overwritten
            self.say(n, "skip", point, f" ({self.plan.unusable[point.slug]})")
            return Outcome(point, UNUSABLE, self.plan.unusable[point.slug])
        if self.plan.status(point) == workdir.RECORDED:  # finished on another machine: its record is committed
            self.say(n, "skip", point, " (recorded)")
            return Outcome(point, "skipped", "recorded")
        if self.plan.status(point) == reuse.COPY_RECORD:
            return self._copy_record(n, point)
        if self.plan.status(point) == reuse.COPY:
            copied = self._copy(n, point)
            if copied is not None:
                return copied
        finished = os.path.exists(os.path.join(run_dir, workdir.RESULT))
        if finished and not self.plan.missing_metrics(point):
            self.say(n, "skip", point, " (done)")
            return Outcome(point, "skipped", "done")
        if not finished and self.eval_only:
            self.say(n, "skip", point, f" ({workdir.point_status(run_dir)}, not run: --eval_only)")
            return Outcome(point, NOT_RUN, "not finished")
        os.makedirs(run_dir, exist_ok=True)
        claim = Claim(run_dir, self.claim_timeout)
        if not self.secondary and not claim.acquire():
            holder = claim.holder() or "another runner"
            self.say(n, "busy", point, f" (claimed by {holder})")
            return Outcome(point, "busy", f"claimed by {holder}")
        try:
            finished = os.path.exists(os.path.join(run_dir, workdir.RESULT))
            if finished and not self.plan.missing_metrics(point):
                self.say(n, "skip", point, " (done by another runner)")
                return Outcome(point, "skipped", "done")
            if not finished and self.eval_only:  # another runner's point that failed meanwhile, say
                return Outcome(point, NOT_RUN, "not finished")
            return self._train(n, point, run_dir, claim, scoring=finished)
        finally:
            with self.lock:
                self.active.pop(run_dir, None)
                for key in [k for k, d in self.pretraining.items() if d == run_dir]:
                    del self.pretraining[key]  # its stage checkpoint, if it wrote one, is found from now on
            self.display.remove(run_dir)
            if not self.secondary:
                claim.release()

    def _copy(self, n: int, point: grid.Point) -> Outcome | None:
        """Copies the point's run from another recipe (grid.reuse_from, `copy_point`). Its outcome, or None to carry
        on as for any point: the copy lacks metrics the recipe asks for (it is scored), or another runner got there
        first."""
        source = self.plan.copies[point.id]
        try:
            placed = copy_point(self.plan, point, self.claim_timeout)
        except reuse.CopyError as e:
            self.say(n, "failed", point, f" copying {rel(source)}: {e}")
            return Outcome(point, "failed", f"copying {rel(source)} failed: {e}")
        if not placed:
            return None
        with self.lock:
            self.plan.copied[point.id] = source
        self.say(n, reuse.COPIED, point, f" <- {rel(source)}")
        return None if self.plan.missing_metrics(point) else Outcome(point, reuse.COPIED, rel(source))

    def _copy_record(self, n: int, point: grid.Point) -> Outcome:
        """Copies the point's run record from another recipe's report (grid.reuse_from, `copy_record_point`): the
        point is then recorded, as if it had finished on another machine."""
        source = self.plan.record_copies[point.id]
        try:
            placed = copy_record_point(self.plan, point)
        except reuse.CopyError as e:
            self.say(n, "failed", point, f" copying {rel(source)}: {e}")
            return Outcome(point, "failed", f"copying {rel(source)} failed: {e}")
        with self.lock:
            self.plan.recorded[point.id] = self.plan.record_dir(point)
            if placed:
                self.plan.copied[point.id] = source
        if not placed:
            self.say(n, "skip", point, " (recorded by another runner)")
            return Outcome(point, "skipped", "recorded")
        self.say(n, reuse.COPIED, point, f" <- {rel(source)}")
        return Outcome(point, reuse.COPIED, rel(source))

    def _train(self, n: int, point: grid.Point, run_dir: str, claim: Claim, scoring: bool = False) -> Outcome:
        """Trains the point, or with `scoring` evaluates its finished run in eval mode (no training)."""
        status = workdir.point_status(run_dir)
        how = {"partial": "resuming", workdir.FAILED: "retrying after a failure"}.get(status, "new")
        if scoring:
            how = f"scoring: {count(len(self.plan.missing_metrics(point)), 'metric')} missing, eval mode"
        bindings = POINT_GIN if not self.secondary else f"point-{self.secondary}.gin"
        gin_files = [self.plan.trainer_recipe.path, os.path.join(run_dir, bindings), *self.plan.overlays]
        gin_params = self.plan.trainer_params + ([EVAL_MODE_PARAM] if scoring else [])
        workdir.write_text_atomic(
            gin_files[1],
            f"# Grid point {point.id} of {rel(self.plan.trainer_recipe.path)}\n" + point.gin_text(),
        )
        if not self.secondary and not scoring:  # a scored point keeps the point.json it was trained with
            record = point_record(self.plan, point, gin_files)
            shared, seconds = self._shared_pretraining(run_dir, status, record)
            if shared is not None:
                record[sharing.SHARED_FROM] = shared
                if seconds is not None:
                    record[sharing.SHARED_SECONDS] = seconds
                if status == reuse.NEW:
                    how = f"new; its pretraining from {shared}"
            workdir.write_json_atomic(os.path.join(run_dir, workdir.POINT), record)
        self.say(n, "running", point, f" ({how}) -> {rel(run_dir)}")
        start = time.time()
        log = os.path.join(run_dir, workdir.LOG if not self.secondary else f"log-{self.secondary}.txt")
        self.display.add(run_dir, f"[{n}/{len(self.plan.points)}]", point.slug, log)
        if self.reuse:
            code = self._serve_point(run_dir, gin_files, gin_params, log, claim)
        else:
            code = self._run_process(run_dir, gin_files, gin_params, log, claim, start)
        if code is None:
            return Outcome(point, "interrupted", "not started")
        return self._outcome(n, point, run_dir, code, start, scoring)

    def _shared_pretraining(self, run_dir: str, status: str, record: dict) -> tuple[str | None, float | None]:
        """(the run dir whose pretraining the point starts from, as point.json records it (`command_path`), that
        pretraining's train_seconds or None) with grid.share_pretraining (supcon.experiment.sharing): for a new
        point, another run dir of the runs folder with the same pretraining settings and a stage checkpoint, copied
        into the point's run dir here; for a started point, what its point.json says (one that trains its own
        pretraining is registered in `self.pretraining`, so that this runner's points that share it wait for it).
        (None, None): none."""
        key = record.get(sharing.SHARED_HASH)
        if status != reuse.NEW:
            previous = workdir.read_json(os.path.join(run_dir, workdir.POINT), {})
            shared = workdir.pretraining_from(previous)
            if shared is not None:
                return shared, previous.get(sharing.SHARED_SECONDS)
            if key is not None:  # resuming its own pretraining: the points that share it wait for it
                with self.lock:
                    self.pretraining.setdefault(key, run_dir)
            return None, None
        # Multi-host (TF_CONFIG): every worker restores its own checkpoint folder, and only this one would be seeded.
        if key is None or os.environ.get("TF_CONFIG") or not sharing.can_seed(run_dir):
            return None, None
        found = self._await_source(key, record["gin_params"], run_dir)
        if found is None:
            return None, None
        source, prefix, step = found
        try:
            seconds = sharing.seed_run_dir(source, prefix, step, run_dir)
        except OSError as e:  # the point trains its own pretraining instead
            self.display.message(f"could not copy the pretraining of {rel(source)} into {rel(run_dir)}: {e}")
            return None, None
        return command_path(source), seconds

    def _run_process(self, run_dir: str, gin_files: list[str], gin_params: list[str], log: str, claim: Claim,
                     start: float) -> int | None:
        """Trains (or scores) a point in a one-shot trainer process; its exit code (negative: killed), None if
        stopped before it started."""
        cmd = [sys.executable, "-m", self.main_module, "--workdir", run_dir]
        cmd += [arg for f in gin_files for arg in ("--gin_file", f)]
        cmd += [arg for b in gin_params for arg in ("--gin_param", b)]
        with open(log, "a") as out:
            out.write(
                f"\n=== runner.py on {HOST} (pid {os.getpid()}) at {time.ctime(start)}: {' '.join(cmd)}\n"
            )
            out.flush()
            with self.lock:
                if self.stop.is_set():
                    return None
                proc = subprocess.Popen(
                    cmd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=child_env(self.threads),
                )
                self.active[run_dir] = (claim, proc)
            claim.child_pid = proc.pid
            if not self.secondary:
                claim.refresh()
            return proc.wait()

    def _take_worker(self, log: str, fresh: bool) -> Worker | None:
        """An idle trainer process (or a new one, output to `log` until its first point); None once stopped."""
        with self.lock:
            if self.stop.is_set():
                return None
            while self.idle and not fresh:
                worker = self.idle.pop()
                if worker.alive():  # an idle process can die too (e.g. the OOM killer): skip it
                    return worker
                worker.close()
            worker = Worker(self.main_module, child_env(self.threads), log)
            self.workers.append(worker)
            return worker

    def _serve_point(self, run_dir: str, gin_files: list[str], gin_params: list[str], log: str,
                     claim: Claim) -> int | None:
        """Trains (or, with EVAL_MODE_PARAM among gin_params, scores) a point in a serving trainer process; its exit
        code (negative: killed), None if stopped."""
        request = {"op": "train", "workdir": run_dir, "gin_files": gin_files, "gin_params": gin_params, "log": log}
        for fresh in (False, True):
            worker = self._take_worker(log, fresh)
            if worker is None:
                return None
            with open(log, "a") as f:
                f.write(
                    f"\n=== runner.py on {HOST} (pid {os.getpid()}) at {time.ctime()}: trainer process "
                    f"{worker.pid} (python -m {self.main_module} --serve), its point {worker.points + 1}\n"
                )
            with self.lock:
                self.active[run_dir] = (claim, worker.proc)
            claim.child_pid = worker.pid
            if not self.secondary:
                claim.refresh()
            reply = worker.request(request)
            if reply is None:  # the process died: a crash, a signal, a lost claim or an interrupt
                code = worker.exit_code()
                return code if code else 1
            if reply.get("restart"):  # the point needs a fresh process (see supcon.experiment.worker)
                worker.close()
                continue
            if reply.get("retire"):
                worker.close()
            else:
                with self.lock:
                    self.idle.append(worker)
            return int(reply["code"])
        raise RuntimeError(f"a fresh trainer process refused {run_dir}")

    def _outcome(self, n: int, point: grid.Point, run_dir: str, code: int, start: float,
                 scoring: bool = False) -> Outcome:
        self.display.remove(run_dir)  # its progress goes before its outcome prints
        seconds = time.time() - start
        if run_dir in self.lost:
            self.say(n, "stopped", point, " (another runner took over its stale claim)")
            return Outcome(point, "busy", "taken over by another runner")
        result = workdir.read_json(os.path.join(run_dir, workdir.RESULT))
        if scoring:
            return self._scored(n, point, run_dir, code, start)
        if code == 0 and result is not None:
            top1 = result.get("eval/top1")
            score = f", eval/top1 {top1:.4f}" if isinstance(top1, int | float) else ""
            self.say(n, "done", point, f" in {seconds:.0f} s{score}")
            return Outcome(point, "trained", f"{seconds:.0f} s")
        reason = failure_reason(run_dir, code, start, self.stop.is_set())
        self.say(
            n,
            "stopped" if self.stop.is_set() else "failed",
            point,
            f" after {seconds:.0f} s: {reason} (log: {rel(os.path.join(run_dir, workdir.LOG))})",
        )
        return Outcome(point, "interrupted" if self.stop.is_set() else "failed", reason)

    def _scored(self, n: int, point: grid.Point, run_dir: str, code: int, start: float) -> Outcome:
        """The outcome of scoring a finished point: done when its result.json now holds every asked-for key."""
        seconds = time.time() - start
        missing = self.plan.missing_metrics(point)
        if code == 0 and not missing:
            result = workdir.read_json(os.path.join(run_dir, workdir.RESULT), {}) or {}
            mean = result.get(corruption_spec.MEAN_TOP1)
            score = f", {corruption_spec.MEAN_TOP1} {mean:.4f}" if isinstance(mean, int | float) else ""
            self.say(n, "scored", point, f" in {seconds:.0f} s{score}")
            return Outcome(point, EVALUATED, f"{seconds:.0f} s")
        if code == 0:
            reason = f"eval mode exited 0 but result.json still lacks {count(len(missing), 'metric')}, e.g. {missing[0]}"
        else:
            reason = failure_reason(run_dir, code, start, self.stop.is_set())
        verb = "stopped" if self.stop.is_set() else "failed"
        self.say(n, verb, point, f" scoring after {seconds:.0f} s: {reason} (log: {rel(os.path.join(run_dir, workdir.LOG))})")
        return Outcome(point, "interrupted" if self.stop.is_set() else "failed", reason)

    def _heartbeat(self) -> None:
        interval = max(0.2, min(30.0, self.claim_timeout / 4))
        while not self.stop.wait(interval):
            with self.lock:
                active = list(self.active.items())
            for run_dir, (claim, proc) in active:
                if not self.secondary and proc.poll() is None and not claim.refresh():
                    self.lost.add(run_dir)
                    proc.terminate()

    def _terminate_all(self) -> None:
        with self.lock:
            for _, proc in self.active.values():
                if proc.poll() is None:
                    proc.terminate()

