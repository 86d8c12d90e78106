"""The training engine, end to end on the bundled digits: each run is a `python -m supcon.main` subprocess."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from tiny_params import TINY, UNREAD

from supcon import workdir as wd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "SUPCON_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}


def main_cmd(workdir, *params, gin_file=TINY):
    cmd = [sys.executable, "-m", "supcon.main", "--workdir", str(workdir), "--gin_file", gin_file]
    for p in params:
        cmd += ["--gin_param", p]
    return cmd


def run_main(workdir, *params, timeout=600, env=None):
    return subprocess.run(
        main_cmd(workdir, *params), cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=timeout
    )


def read(workdir, name):
    return wd.read_json(os.path.join(workdir, name))


def train_records(workdir):
    return [r for r in wd.read_jsonl(os.path.join(workdir, wd.METRICS)) if r["kind"] == "train"]


@pytest.fixture
def finished_run(tiny_run):
    """The session's uninterrupted tiny run (tests/conftest.py), read only: every worker reads it."""
    return tiny_run


@pytest.fixture
def own_finished_run(tiny_run, tmp_path):
    """A copy of the session's tiny run, for a test that runs the trainer on it again (and so writes into it)."""
    return shutil.copytree(tiny_run, tmp_path / "copy")


def test_short_run_lowers_loss_and_writes_every_file(finished_run):
    for name in (wd.CONFIG, wd.OPERATIVE_CONFIG, wd.ENV, wd.METRICS, wd.STATUS, wd.RESULT, wd.EMBEDDINGS):
        assert os.path.isfile(finished_run / name), name
    for name in (wd.TB_DIR, wd.CKPT_DIR, wd.EXPORT_DIR):
        assert os.listdir(finished_run / name), name
    result = read(finished_run, wd.RESULT)
    for key in wd.RESULT_KEYS + ("knn/top1",):
        assert key in result, key
    assert 0.0 <= result["eval/top1"] <= 1.0 and result["eval/examples"] == 360  # the whole test split
    assert result["step"] == 24 + 8  # 3 epochs + 1 epoch of 256 examples at batch 32
    pretrain = [r["loss"] for r in train_records(finished_run) if r["stage"] == "pretrain"]
    assert pretrain[-1] < pretrain[0], pretrain
    assert read(finished_run, wd.STATUS)["state"] == wd.DONE
    env = read(finished_run, wd.ENV)
    assert env["onednn"] == "1"  # supcon.main turns TF's oneDNN kernels on unless the caller chose
    assert env["mixed_precision"] is False  # the fixture's recipe says so; 'auto' is tested separately
    assert env["replicas"] == 1 and len(env["git_sha"]) >= 7 and "tensorflow" in " ".join(env["versions"])
    assert "train_and_evaluate.stages" in (finished_run / wd.CONFIG).read_text()
    embeddings = np.load(finished_run / wd.EMBEDDINGS)
    assert embeddings["embeddings"].shape[0] == embeddings["labels"].shape[0] == 100


def test_sigkill_then_rerun_gives_identical_metrics(finished_run, tmp_path):
    workdir = tmp_path / "killed"
    proc = subprocess.Popen(main_cmd(workdir, *UNREAD), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = workdir / wd.CKPT_DIR
    deadline = time.time() + 300
    while time.time() < deadline:
        if ckpt.is_dir() and any(n.startswith("ckpt-12") for n in os.listdir(ckpt)):
            break
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed")
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (workdir / wd.RESULT).exists()
    rerun = run_main(workdir, *UNREAD)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # It resumes from the last complete checkpoint (the kill may interrupt the save of step 12), not from 0.
    resumed = re.search(r"stage pretrain: steps (\d+)\.\.", rerun.stdout)
    assert resumed and int(resumed.group(1)) >= 4, rerun.stdout[-2000:]
    a, b = read(finished_run, wd.RESULT), read(workdir, wd.RESULT)
    for key in ("eval/top1", "eval/top5", "eval/loss", "knn/top1", "step"):
        assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key


def test_served_process_trains_a_later_point_exactly_as_a_fresh_process(finished_run, tmp_path):
    """The runner's long-lived trainer (supcon.experiment.worker): no state leaks from one point into the next."""
    from supcon.experiment.worker import Worker

    # The runner's --auto_precision reaches a trainer as SUPCON_AUTO_PRECISION: it decides 'auto' only.
    server = Worker("supcon.main", dict(ENV, SUPCON_AUTO_PRECISION="mixed_bfloat16"), str(tmp_path / "startup.log"))
    try:
        def train(name, *params):
            request = {"op": "train", "workdir": str(tmp_path / name), "gin_files": [TINY],
                       "gin_params": list(params), "log": str(tmp_path / f"{name}.log")}
            return server.request(request)

        # Another seed, temperature and width, bf16 mixed precision and no op determinism: all process-wide
        # or graph state a leak would carry into the next point.
        other = train("other", "PRETRAIN_EPOCHS = 1", "LINEAR_EPOCHS = 1", "TEMPERATURE = 0.5", "WIDTH = 0.0625",
                      "train_and_evaluate.seed = 1", "train_and_evaluate.mixed_precision = 'auto'",
                      "train_and_evaluate.deterministic = False", "train_and_evaluate.knn_k = 0")
        assert other == {"code": 0, "retire": False}, (tmp_path / "other.log").read_text()[-3000:]
        assert (read(tmp_path / "other", wd.ENV)["mixed_precision"], read(tmp_path / "other", wd.ENV)["precision_by"]) \
            == (True, "--auto_precision")
        # A point that needs two logical CPUs cannot get them in a process whose TF has started.
        assert train("mirrored", "train_and_evaluate.topology = 'mirrored'",
                     "train_and_evaluate.num_devices = 2") == {"restart": True}
        assert not (tmp_path / "mirrored").exists()
        assert train("same", *UNREAD) == {"code": 0, "retire": False}, (tmp_path / "same.log").read_text()[-3000:]
    finally:
        server.close()
    assert server.exit_code() == 0 and server.points == 2
    assert "stage pretrain: steps 0..24" in (tmp_path / "same.log").read_text()
    a, b = read(finished_run, wd.RESULT), read(tmp_path / "same", wd.RESULT)
    for key in ("eval/top1", "eval/top5", "eval/loss", "knn/top1", "step"):
        assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key
    assert (read(tmp_path / "same", wd.ENV)["mixed_precision"], read(tmp_path / "same", wd.ENV)["precision_by"]) \
        == (False, "binding")  # the tiny recipe binds False, which --auto_precision does not touch
    losses = [[r["loss"] for r in train_records(d)] for d in (finished_run, tmp_path / "same")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-6)
    # The process did not exit after the point, yet its TensorBoard events are on disk, up to the final eval.
    assert tensorboard_steps(tmp_path / "same") == tensorboard_steps(finished_run)
    assert max(tensorboard_steps(tmp_path / "same")) == b["step"]


def tensorboard_steps(workdir):
    """Steps of the scalars in a run's TensorBoard event files (read as TFRecords of Event protos)."""
    import tensorflow as tf

    steps = set()
    for name in os.listdir(workdir / wd.TB_DIR):
        for record in tf.data.TFRecordDataset(str(workdir / wd.TB_DIR / name)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            if event.summary.value:
                steps.add(event.step)
    return steps


@pytest.mark.slow  # a trainer process; the runner's own skip is tested with the fake trainer
def test_rerun_of_finished_run_does_not_train_again(own_finished_run):
    before = len(train_records(own_finished_run))
    proc = run_main(own_finished_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(train_records(own_finished_run)) == before


@pytest.mark.slow  # a trainer process for a gin wiring check
def test_bindings_of_default_callables_reach_the_run(tmp_path):
    """eval_preprocess / normalize are Python defaults of train_and_evaluate: their bindings must still apply."""
    workdir = tmp_path / "bound"
    proc = run_main(workdir, "PRETRAIN_EPOCHS = 1", "train_and_evaluate.knn_k = 0",
                    "train_and_evaluate.export_model = False",
                    "eval_preprocess.method = 'resize_then_crop'", "eval_preprocess.image_size = 6",
                    "eval_preprocess.crop_padding = 0", "pretrain/simclr_augment.image_size = 6",
                    "linear/simclr_augment.image_size = 6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "input 6x6x1" in read(workdir, wd.ENV)["scale"]["encoder"]  # the model input comes from eval_preprocess
    operative = (workdir / wd.OPERATIVE_CONFIG).read_text()
    assert re.search(r"^(supcon/)?eval_preprocess.image_size = 6$", operative, re.M), operative


def test_registered_default_is_resolved_through_gin():
    import gin
    import tensorflow as tf

    from supcon import augment
    from supcon.train import config as run_config

    with gin.unlock_config():
        gin.bind_parameter("eval_preprocess.image_size", 5)
    try:
        assert run_config.configured(augment.eval_preprocess)(tf.zeros([8, 8, 1])).shape == (5, 5, 1)
        plain = lambda image: image  # noqa: E731 - not registered with gin: returned as it is
        assert run_config.configured(plain) is plain
    finally:
        gin.clear_config()


# The rule, stated apart from the code: bfloat16 pays on a GPU, a TPU, or a CPU with AVX-512 BF16 or AMX-BF16
# instructions; elsewhere (AVX2, plain AVX-512, AMX without BF16) TensorFlow emulates it and float32 is faster.
CPU_FLAG_SETS = [  # (/proc/cpuinfo flags, bfloat16 fast)
    ({"avx512_bf16"}, True),
    ({"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"}, True),
    ({"amx_bf16"}, True),
    ({"avx2", "amx_tile", "amx_bf16"}, True),
    ({"avx2"}, False),
    ({"avx2", "fma", "avx512f", "avx512_vnni"}, False),
    ({"avx2", "amx_tile", "amx_int8"}, False),
    (set(), False),
]
MIXED_PRECISION_CASES = [  # (value, topology, /proc/cpuinfo flags or None when unreadable, a GPU, expected)
    ("auto", "one_device", "fpu avx2 fma", False, False),
    ("auto", "one_device", "fpu avx2 avx512f avx512_bf16", False, True),
    ("auto", "one_device", "fpu avx2 amx_bf16 amx_tile", False, True),
    ("auto", "one_device", None, False, False),
    ("auto", "mirrored", "fpu avx2", True, True),
    ("auto", "tpu", "fpu avx2", False, True),
    (True, "one_device", "fpu avx2", False, True),
    (True, "tpu", None, False, True),
    (False, "tpu", "fpu avx512_bf16", True, False),
    (False, "one_device", "fpu amx_bf16", False, False),
]


def _fake_hardware(monkeypatch, module, cpuinfo_flags, gpu):
    """Makes `module` (supcon.train.config: bfloat16_is_fast, resolve_mixed_precision) see a /proc/cpuinfo with
    these flags (None: unreadable) and a GPU or none."""
    import builtins
    import io

    import tensorflow as tf

    def fake_open(path, *args, **kwargs):
        if path != "/proc/cpuinfo":
            return builtins.open(path, *args, **kwargs)
        if cpuinfo_flags is None:
            raise FileNotFoundError(path)
        return io.StringIO(f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {cpuinfo_flags}\nbugs\t\t: \n")

    real = tf.config.list_physical_devices
    monkeypatch.setattr(module, "open", fake_open, raising=False)
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: (["/physical_device:GPU:0"] if gpu else []) if kind == "GPU" else real(kind))


@pytest.mark.parametrize("flags, fast", CPU_FLAG_SETS)
def test_bfloat16_is_fast_on_the_cpus_that_have_bfloat16_instructions(monkeypatch, flags, fast):
    from supcon.train import config

    _fake_hardware(monkeypatch, config, "fpu", gpu=False)  # no GPU, whatever this machine has
    assert config.bfloat16_is_fast(set(flags)) is fast


@pytest.mark.parametrize("value, topology, cpuinfo, gpu, expected", MIXED_PRECISION_CASES)
def test_mixed_precision_auto_follows_the_hardware(monkeypatch, value, topology, cpuinfo, gpu, expected):
    """'auto' reads the (faked) /proc/cpuinfo and GPU list; True and False pass through whatever the hardware."""
    from supcon.train import config

    _fake_hardware(monkeypatch, config, cpuinfo, gpu)
    monkeypatch.delenv("SUPCON_AUTO_PRECISION", raising=False)
    assert config.resolve_mixed_precision(value, topology) is expected


@pytest.mark.parametrize("auto", ["float32", "mixed_bfloat16", "hardware", ""])
@pytest.mark.parametrize("value, topology, cpuinfo, gpu, expected", MIXED_PRECISION_CASES)
def test_auto_precision_decides_auto_only(monkeypatch, auto, value, topology, cpuinfo, gpu, expected):
    """The runner's --auto_precision (SUPCON_AUTO_PRECISION) replaces the hardware's choice for 'auto'; a True /
    False binding and 'hardware' (or unset) resolve as before."""
    from supcon.train import config

    _fake_hardware(monkeypatch, config, cpuinfo, gpu)
    monkeypatch.setenv("SUPCON_AUTO_PRECISION", auto)
    if value == "auto" and auto in ("float32", "mixed_bfloat16"):
        expected = auto == "mixed_bfloat16"
    assert config.resolve_mixed_precision(value, topology) is expected


def test_mixed_precision_rejects_other_values(monkeypatch):
    from supcon.train import config

    with pytest.raises(ValueError, match="train_and_evaluate.mixed_precision must be True, False or 'auto'"):
        config.resolve_mixed_precision("yes", "one_device")
    monkeypatch.setenv("SUPCON_AUTO_PRECISION", "bfloat16")
    with pytest.raises(ValueError, match=r"^SUPCON_AUTO_PRECISION='bfloat16' \(the runner's --auto_precision\) must be "
                                         r"one of hardware, float32, mixed_bfloat16$"):
        config.resolve_mixed_precision("auto", "one_device")


@pytest.mark.slow  # two trainer processes for an execution setting, not a result of the paper's method
def test_steps_per_execution_does_not_change_the_run(finished_run, tmp_path):
    """One step per tf.function call and several per call (the default) train the very same steps."""
    workdir = tmp_path / "spe1"
    proc = run_main(workdir, "train_and_evaluate.steps_per_execution = 1", "train_and_evaluate.export_model = False")
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, many = train_records(workdir), train_records(finished_run)
    assert [r["step"] for r in one] == [r["step"] for r in many]  # the same logging cadence
    for a, b in zip(one, many, strict=True):
        terms = [k for k in ("loss", "contrastive", "cross_entropy", "weight_decay") if k in b]
        assert "loss" in terms and [k for k in terms if k in a] == terms
        for key in terms:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (key, a["step"])
    for key in ("eval/top1", "eval/top5", "eval/loss", "knn/top1", "step"):
        assert read(workdir, wd.RESULT)[key] == pytest.approx(read(finished_run, wd.RESULT)[key], rel=1e-6), key


def test_an_execution_never_crosses_a_log_checkpoint_stage_or_nan_boundary():
    import types

    from supcon.train import run as trainer

    def chunk(step, end, spe=20, log=50, save=40, nan=-1):
        config = types.SimpleNamespace(steps_per_execution=spe, log_every_steps=log, checkpoint_every_steps=save,
                                       inject_nan_at_step=nan)
        return trainer.Run._chunk(types.SimpleNamespace(config=config), step, end)

    assert chunk(0, 1000) == 20 and chunk(20, 1000) == 20  # up to steps_per_execution
    assert chunk(30, 1000) == 10  # stops at the checkpoint at 40
    assert chunk(45, 1000) == 5  # stops at the log at 50
    assert chunk(0, 7) == 7 and chunk(391, 395, spe=100, log=1000, save=1000) == 4  # at the stage's end
    assert chunk(0, 1000, nan=3) == 3 and chunk(3, 1000, nan=3) == 20  # the NaN hook's step ends one
    assert chunk(5, 1000, spe=1) == 1


@pytest.mark.slow  # a trainer process for the failure path
def test_non_finite_loss_marks_run_failed(tmp_path):
    proc = run_main(tmp_path / "nan", "train_and_evaluate.inject_nan_at_step = 3")
    assert proc.returncode != 0
    status = read(tmp_path / "nan", wd.STATUS)
    assert status["state"] == wd.FAILED and status["step"] == 3 and "non-finite loss" in status["reason"]
    assert not (tmp_path / "nan" / wd.RESULT).exists()


def test_eval_mode_on_latest_checkpoint(own_finished_run):
    proc = run_main(own_finished_run, "train_and_evaluate.mode = 'eval'", "train_and_evaluate.export_model = False")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = [r for r in wd.read_jsonl(os.path.join(own_finished_run, wd.METRICS)) if r["kind"] == "eval"]
    assert len(evals) >= 2 and evals[-1]["eval/top1"] == pytest.approx(evals[0]["eval/top1"])


def test_export_round_trip(finished_run):
    import tensorflow as tf

    from supcon import data

    loaded = tf.saved_model.load(str(finished_run / wd.EXPORT_DIR))
    serve = loaded.signatures["serving_default"]
    test = data.load_source("digits").split_dataset("test").batch(1000)
    batch = next(iter(test))
    out = serve(images=batch["image"])
    assert out["logits"].shape == (360, 10) and out["embeddings"].shape[0] == 360
    norms = np.linalg.norm(out["embeddings"].numpy(), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-4)
    top1 = np.mean(np.argmax(out["logits"].numpy(), 1) == batch["label"].numpy())
    assert top1 == pytest.approx(read(finished_run, wd.RESULT)["eval/top1"], abs=1e-9)


def first_losses(workdir, n=3):
    return [r["loss"] for r in train_records(workdir)][:n]


def test_two_logical_cpus_match_one_device(tmp_path):
    common = [  # the losses are compared: mode 'train' skips the evaluation
        "train_and_evaluate.log_every_steps = 1", "PRETRAIN_EPOCHS = 0.375", "LINEAR_EPOCHS = 0.125",
        "resnet.sync_batch_norm = True", "train_and_evaluate.knn_k = 0", "train_and_evaluate.export_model = False",
        "train_and_evaluate.mode = 'train'",
    ]
    one = run_main(tmp_path / "one", *common)
    two = run_main(tmp_path / "two", *common, "train_and_evaluate.topology = 'mirrored'", "train_and_evaluate.num_devices = 2")
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    assert read(tmp_path / "two", wd.ENV)["replicas"] == 2
    np.testing.assert_allclose(first_losses(tmp_path / "two"), first_losses(tmp_path / "one"), rtol=1e-4)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multi_worker_mirrored_with_two_local_workers(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    params = [
        "train_and_evaluate.log_every_steps = 1", "PRETRAIN_EPOCHS = 0.375", "LINEAR_EPOCHS = 0.125",
        "train_and_evaluate.topology = 'multi_worker'", "train_and_evaluate.knn_k = 0",
        "train_and_evaluate.export_model = False", "resnet.sync_batch_norm = True",
    ]
    procs = []
    for index in range(2):
        env = {**ENV, "SUPCON_THREADS": "1", "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            main_cmd(tmp_path / f"worker{index}", *params), cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    try:
        outs = [p.communicate(timeout=420) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    env = read(tmp_path / "worker0", wd.ENV)
    assert env["replicas"] == 2 and env["strategy"] in ("MultiWorkerMirroredStrategy", "CollectiveAllReduceStrategy")
    # Each worker reads its own shard of the data, so the global batches differ from a one-device run's; the
    # reported loss is all-reduced, so both workers log the same values, and the chief finishes the run.
    losses = [first_losses(d, n=10) for d in (tmp_path / "worker0", tmp_path / "worker1" / "worker-1")]
    assert len(losses[0]) == 4 and np.all(np.isfinite(losses[0]))  # 3 pretrain steps + 1 linear step
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)
    assert read(tmp_path / "worker0", wd.RESULT)["eval/examples"] == 360


# ---------------------------------------------------------------------------------------------------------
# The memory queue, continuous evaluation and the k-NN probe's value


def test_memory_queue_keeps_the_last_entries_fifo_with_their_labels():
    from supcon.train import steps

    queue = steps.MemoryQueue(5, 2)
    features, labels = queue.contents()
    assert features.shape == (0, 2) and labels.shape == (0,)

    def push(first, n):  # entry i is the feature (i, -i) with label i % 3
        i = np.arange(first, first + n)
        queue.push(np.stack([i, -i], axis=1).astype(np.float32), i % 3)

    def entries():
        features, labels = (t.numpy() for t in queue.contents())
        np.testing.assert_array_equal(features[:, 1], -features[:, 0])
        np.testing.assert_array_equal(labels, features[:, 0].astype(int) % 3)  # each label stays with its entry
        return features[:, 0].astype(int).tolist()

    push(0, 3)
    assert entries() == [0, 1, 2] and int(queue.count) == 3
    push(3, 4)  # 7 entries in 5 slots: entry i lives in slot i mod 5, so 5 and 6 replaced the oldest, 0 and 1
    assert entries() == [5, 6, 2, 3, 4] and int(queue.count) == 7
    oldest = int(queue.count) % 5
    assert np.roll(entries(), -oldest).tolist() == [2, 3, 4, 5, 6]  # first in, first out
    push(7, 8)  # more than it holds at once: the last 5 (10..14) are kept, continuing from slot 7 mod 5 = 2
    assert entries() == [13, 14, 10, 11, 12] and int(queue.count) == 12


def queue_state(workdir):
    """The memory queue's variables in a run's latest checkpoint: {'features', 'labels', 'count'}."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(workdir / wd.CKPT_DIR))
    names = [n for n in reader.get_variable_to_shape_map() if n.startswith("queue/")]
    return {n.split("/")[1]: reader.get_tensor(n) for n in names}


QUEUE = ("MEMORY_SIZE = 48", "train_and_evaluate.export_model = False",  # protocols/supcon.gin binds it scoped
         "train_and_evaluate.save_embeddings = 0")


def kill_after_checkpoint(workdir, step, *params):
    """Starts a run and SIGKILLs it once its checkpoint of `step` exists (as a pre-empted job)."""
    proc = subprocess.Popen(main_cmd(workdir, *params), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt, deadline = workdir / wd.CKPT_DIR, time.time() + 300
    while not (ckpt.is_dir() and any(n.startswith(f"ckpt-{step}.") for n in os.listdir(ckpt))):
        if proc.poll() is not None or time.time() > deadline:
            pytest.fail("the run ended before it could be killed")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (workdir / wd.RESULT).exists()


@pytest.mark.slow  # three trainer runs; kill -9 and resume is proven in make test by test_sigkill_then_rerun_...
def test_memory_queue_run_killed_and_resumed_equals_an_uninterrupted_one(tmp_path):
    """Resume restores the queue with the step, the optimizer and the data position: the resumed run's losses,
    queue and metrics are the uninterrupted run's (one served process trains both; a killed one-shot run
    starts meanwhile)."""
    from supcon.experiment.worker import Worker

    # The runner's --auto_precision reaches a trainer as SUPCON_AUTO_PRECISION: it decides 'auto' only.
    server = Worker("supcon.main", dict(ENV, SUPCON_AUTO_PRECISION="mixed_bfloat16"), str(tmp_path / "startup.log"))
    try:
        kill_after_checkpoint(tmp_path / "killed", 8, *QUEUE)

        def train(name):
            request = {"op": "train", "workdir": str(tmp_path / name), "gin_files": [TINY], "gin_params": list(QUEUE),
                       "log": str(tmp_path / f"{name}.log")}
            assert server.request(request) == {"code": 0, "retire": False}, (tmp_path / f"{name}.log").read_text()

        train("full")
        train("killed")
    finally:
        server.close()
    resumed = re.search(r"stage pretrain: steps (\d+)\.\.", (tmp_path / "killed.log").read_text())
    assert resumed and 4 <= int(resumed.group(1)) < 24  # resumed inside the stage that fills the queue
    full, killed = queue_state(tmp_path / "full"), queue_state(tmp_path / "killed")
    assert int(full["count"]) == 24 * 32  # every pretraining sample was pushed (view 0), none in the linear stage
    assert full["features"].shape[0] == 48 and set(full["labels"].tolist()) <= set(range(10))
    for key in ("features", "labels", "count"):
        np.testing.assert_array_equal(killed[key], full[key], err_msg=key)
    losses = {r["step"]: r["loss"] for r in train_records(tmp_path / "full")}
    after = {r["step"]: r["loss"] for r in train_records(tmp_path / "killed")}  # the later record of a step wins
    assert sorted(after) == sorted(losses)
    np.testing.assert_allclose([after[s] for s in sorted(after)], [losses[s] for s in sorted(losses)], rtol=1e-6)
    a, b = read(tmp_path / "full", wd.RESULT), read(tmp_path / "killed", wd.RESULT)
    for key in ("eval/top1", "eval/top5", "eval/loss", "knn/top1", "step"):
        assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key


@pytest.mark.slow  # two trainer processes for an evaluation mode, not a result of the paper's method
def test_continuous_eval_follows_a_trainer_and_finishes_after_the_final_checkpoint(finished_run, tmp_path):
    """A trainer ('train') and an evaluator ('continuous_eval') on one run dir: the evaluator evaluates the
    checkpoints it sees and writes result.json from the final one, equal to a train_then_eval run's; both logs
    hold no third-party INFO lines (tfds, the checkpoint and SavedModel writers)."""
    workdir = tmp_path / "shared"
    evaluator = subprocess.Popen(
        main_cmd(workdir, "train_and_evaluate.mode = 'continuous_eval'", "train_and_evaluate.eval_poll_seconds = 0.2",
                 "train_and_evaluate.eval_timeout_seconds = 300"),
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trainer = subprocess.Popen(main_cmd(workdir, "train_and_evaluate.mode = 'train'"), cwd=ROOT, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        trained = trainer.communicate(timeout=600)
        evaluated = evaluator.communicate(timeout=600)
    finally:
        for proc in (trainer, evaluator):
            if proc.poll() is None:
                proc.kill()
    assert trainer.returncode == 0, trained[1][-3000:]
    assert evaluator.returncode == 0, evaluated[1][-3000:]
    assert "eval at step" not in trained[0] and "step 32/32 [linear]" in trained[0]
    result, final = read(workdir, wd.RESULT), read(finished_run, wd.RESULT)
    assert result["step"] == 32
    for key in ("eval/top1", "eval/top5", "eval/loss", "knn/top1"):
        assert result[key] == pytest.approx(final[key], rel=1e-6, abs=1e-7), key
    evals = [r["step"] for r in wd.read_jsonl(os.path.join(workdir, wd.METRICS)) if r["kind"] == "eval"]
    assert evals[-1] == 32 and evals == sorted(set(evals)) and all(s % 4 == 0 for s in evals)  # checkpoint steps
    assert os.listdir(workdir / wd.EXPORT_DIR)
    for out in (trained[1], evaluated[1]):
        assert not re.search(r"^I\d{4} ", out, re.M), [line for line in out.splitlines() if line.startswith("I")]


def test_knn_top1_on_a_hand_made_embedding():
    """Cosine k-NN with votes weighted exp(cos / 0.07): values worked out by hand."""
    from supcon.train import evaluate

    train = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])  # unit vectors
    train_labels = np.array([0, 1, 1, 2])
    test = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.96, 0.28]])
    test_labels = np.array([0, 2, 1, 1])
    # k = 3. q0 = (1, 0): cosines 1, .8, .6 to train 0, 1, 2 -> class 0 gets e^(1/.07) = e^14.29, class 1
    #   e^11.43 + e^8.57: 0, right (a plain majority would say 1).
    # q1 = (0, 1): the mirror image -> class 2: right.
    # q2 = (.8, .6): cosines 1, .96, .8 to train 1, 2, 0 -> class 1: right.
    # q3 = (.96, .28): cosines .96, .936, .8 to train 0, 1, 2 -> class 0 e^13.71 = 9.0e5 beats class 1
    #   e^13.37 + e^11.43 = 6.4e5 + 0.9e5: 0, wrong (a majority would say 1, right).
    assert evaluate.knn_accuracy(train, train_labels, test, test_labels, k=3) == 0.75
    # k = 1: the nearest neighbour alone: 0, 2, 1, 0 -> 3 of 4; k above the reference set counts all 4 (q3: class 0
    # e^13.71 + nothing vs class 1 e^13.37 + e^11.43, class 2 e^4): 3 of 4; chunks change nothing.
    assert evaluate.knn_accuracy(train, train_labels, test, test_labels, k=1) == 0.75
    assert evaluate.knn_accuracy(train, train_labels, test, test_labels, k=10, num_classes=5, chunk=1) == 0.75
    assert evaluate.knn_accuracy(train, train_labels, test[:3], np.array([1, 1, 1]), k=3) == pytest.approx(1 / 3)
    # A tie (equal weights for classes 1 and 0) goes to the lower class index (argmax keeps the first).
    tie_train, tie_labels = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1, 0])
    middle = np.array([[np.sqrt(0.5), np.sqrt(0.5)]])
    assert evaluate.knn_accuracy(tie_train, tie_labels, middle, np.array([0]), k=2) == 1.0
    assert evaluate.knn_accuracy(tie_train, tie_labels, middle, np.array([1]), k=2) == 0.0
    with pytest.raises(ValueError, match="knn_k must be >= 1"):
        evaluate.knn_accuracy(train, train_labels, test, test_labels, k=0)


def test_progress_eta_counts_only_the_steps_of_this_process(tmp_path, capsys, monkeypatch):
    """After a resume at step 500, the ETA comes from the steps trained since, not from step 0."""
    import types

    import tensorflow as tf

    from supcon.train import record

    run = types.SimpleNamespace(dir=str(tmp_path), total_steps=1000,
                                optimizers=[types.SimpleNamespace(learning_rate=tf.constant(0.1))])
    logger = record.Logger(run)
    # A fixed clock: the window began 2 s before "now", so the rate is exactly 20 steps / 2 s whatever the load.
    monkeypatch.setattr(sys.modules[record.Logger.__module__], "time", types.SimpleNamespace(time=lambda: 1000.0))
    planned = types.SimpleNamespace(batch_size=10, index=0, stage=types.SimpleNamespace(name="pretrain"))
    window = {"loss": [{"loss": 1.0}] * 20, "time": 998.0, "steps": 20}  # steps 500..520 in 2 s: 10 steps/s
    logger(planned, 520, window)
    logger.close()
    line = capsys.readouterr().out
    assert "100 img/s" in line  # 20 steps x 10 images in 2 s
    assert "ETA 0m48s" in line, line  # (1000 - 520) steps at 10 steps/s (from step 0: 260 steps/s, 0m01s)
    assert os.path.getsize(tmp_path / wd.METRICS) > 0
