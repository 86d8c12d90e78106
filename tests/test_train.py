"""The training engine, end to end on the bundled digits: each run is a `python -m supcon.main` subprocess."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from supcon import workdir as wd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "fixtures", "train", "digits_tiny.gin")
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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One uninterrupted tiny run, shared by several tests."""
    workdir = tmp_path_factory.mktemp("run") / "full"
    proc = run_main(workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


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
    proc = subprocess.Popen(main_cmd(workdir), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    rerun = run_main(workdir)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # It resumes from the last complete checkpoint (the kill may interrupt the save of step 12), not from 0.
    resumed = re.search(r"stage pretrain: steps (\d+)\.\.", rerun.stdout)
    assert resumed and int(resumed.group(1)) >= 4, rerun.stdout[-2000:]
    a, b = read(finished_run, wd.RESULT), read(workdir, wd.RESULT)
    for key in ("eval/top1", "eval/top5", "eval/loss", "knn/top1", "step"):
        assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key


def test_served_process_trains_a_later_point_exactly_as_a_fresh_process(finished_run, tmp_path):
    """The runner's long-lived trainer (supcon.worker): no state leaks from one point into the next."""
    from supcon.worker import Worker

    server = Worker("supcon.main", ENV, str(tmp_path / "startup.log"))
    try:
        def train(name, *params):
            request = {"op": "train", "workdir": str(tmp_path / name), "gin_files": [TINY],
                       "gin_params": list(params), "log": str(tmp_path / f"{name}.log")}
            return server.request(request)

        # Another seed, temperature and width, bf16 mixed precision and no op determinism: all process-wide
        # or graph state a leak would carry into the next point.
        other = train("other", "PRETRAIN_EPOCHS = 1", "LINEAR_EPOCHS = 1", "TEMPERATURE = 0.5", "WIDTH = 0.0625",
                      "train_and_evaluate.seed = 1", "train_and_evaluate.mixed_precision = True",
                      "train_and_evaluate.deterministic = False", "train_and_evaluate.knn_k = 0")
        assert other == {"code": 0, "retire": False}, (tmp_path / "other.log").read_text()[-3000:]
        assert read(tmp_path / "other", wd.ENV)["mixed_precision"] is True
        # A point that needs two logical CPUs cannot get them in a process whose TF has started.
        assert train("mirrored", "train_and_evaluate.topology = 'mirrored'",
                     "train_and_evaluate.num_devices = 2") == {"restart": True}
        assert not (tmp_path / "mirrored").exists()
        assert train("same", ) == {"code": 0, "retire": False}, (tmp_path / "same.log").read_text()[-3000:]
    finally:
        server.close()
    assert server.exit_code() == 0 and server.points == 2
    assert "stage pretrain: steps 0..24" in (tmp_path / "same.log").read_text()
    a, b = read(finished_run, wd.RESULT), read(tmp_path / "same", wd.RESULT)
    for key in ("eval/top1", "eval/top5", "eval/loss", "knn/top1", "step"):
        assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key
    assert read(tmp_path / "same", wd.ENV)["mixed_precision"] is False
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


def test_rerun_of_finished_run_does_not_train_again(finished_run):
    before = len(train_records(finished_run))
    proc = run_main(finished_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(train_records(finished_run)) == before


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

    from supcon import augment, train

    with gin.unlock_config():
        gin.bind_parameter("eval_preprocess.image_size", 5)
    try:
        assert train.configured(augment.eval_preprocess)(tf.zeros([8, 8, 1])).shape == (5, 5, 1)
        plain = lambda image: image  # noqa: E731 - not registered with gin: returned as it is
        assert train.configured(plain) is plain
    finally:
        gin.clear_config()


def test_mixed_precision_auto_follows_the_hardware():
    from supcon import train

    assert train.bfloat16_is_fast({"avx2", "avx512_bf16"}) is True
    assert train.bfloat16_is_fast({"avx2", "amx_bf16", "amx_tile"}) is True
    assert train.bfloat16_is_fast({"avx2", "fma"}) is False  # no GPU in the test session
    assert train.resolve_mixed_precision(True, "one_device") is True
    assert train.resolve_mixed_precision(False, "tpu") is False
    assert train.resolve_mixed_precision("auto", "tpu") is True
    assert train.resolve_mixed_precision("auto", "one_device") is train.bfloat16_is_fast()
    with pytest.raises(ValueError, match="train_and_evaluate.mixed_precision must be True, False or 'auto'"):
        train.resolve_mixed_precision("yes", "one_device")


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
    from supcon import train

    def chunk(step, end, spe=20, log=50, save=40, nan=-1):
        cfg = {"steps_per_execution": spe, "log_every_steps": log, "checkpoint_every_steps": save,
               "inject_nan_at_step": nan}
        return train.Run._chunk(type("R", (), {"cfg": cfg})(), step, end)

    assert chunk(0, 1000) == 20 and chunk(20, 1000) == 20  # up to steps_per_execution
    assert chunk(30, 1000) == 10  # stops at the checkpoint at 40
    assert chunk(45, 1000) == 5  # stops at the log at 50
    assert chunk(0, 7) == 7 and chunk(391, 395, spe=100, log=1000, save=1000) == 4  # at the stage's end
    assert chunk(0, 1000, nan=3) == 3 and chunk(3, 1000, nan=3) == 20  # the NaN hook's step ends one
    assert chunk(5, 1000, spe=1) == 1


def test_non_finite_loss_marks_run_failed(tmp_path):
    proc = run_main(tmp_path / "nan", "train_and_evaluate.inject_nan_at_step = 3")
    assert proc.returncode != 0
    status = read(tmp_path / "nan", wd.STATUS)
    assert status["state"] == wd.FAILED and status["step"] == 3 and "non-finite loss" in status["reason"]
    assert not (tmp_path / "nan" / wd.RESULT).exists()


def test_eval_mode_on_latest_checkpoint(finished_run):
    proc = run_main(finished_run, "train_and_evaluate.mode = 'eval'", "train_and_evaluate.export_model = False")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evals = [r for r in wd.read_jsonl(os.path.join(finished_run, wd.METRICS)) if r["kind"] == "eval"]
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
    common = [
        "train_and_evaluate.log_every_steps = 1", "PRETRAIN_EPOCHS = 0.375", "LINEAR_EPOCHS = 0.125",
        "resnet.sync_batch_norm = True", "train_and_evaluate.knn_k = 0", "train_and_evaluate.export_model = False",
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
