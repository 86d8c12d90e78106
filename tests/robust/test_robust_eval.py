"""Robustness evaluation: corruption settings and keys, the corrupted test sets, the trainer's corruption metrics
and calibration.json, eval mode on a finished run, and the runner scoring finished points (a fake trainer)."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from supcon import workdir as wd
from supcon.experiment import grid, scoring
from supcon.robust import spec as corruption_spec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "tests", "fixtures", "train", "digits_tiny.gin")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "runner")
RUNNER = os.path.join(ROOT, "runner.py")
ENV = {**os.environ, "SUPCON_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
# Four steps on 32 digits, no k-NN, no export: the run only has to exist for its evaluation.
SMALL = ("PRETRAIN_EPOCHS = 1", "LINEAR_EPOCHS = 1", "BATCH_SIZE = 16", "train_and_evaluate.max_examples = 32",
         "train_and_evaluate.eval_max_examples = 64", "train_and_evaluate.eval_batch_size = 32",
         "train_and_evaluate.knn_k = 0", "train_and_evaluate.export_model = False",
         "train_and_evaluate.save_embeddings = 0", "train_and_evaluate.checkpoint_every_steps = 100")
TWO_BY_TWO = ("train_and_evaluate.corruptions = ['fog', 'gaussian_noise']",
              "train_and_evaluate.corruption_severities = [1, 3]")


# --------------------------------------------------------------------------------------------------------
# Settings, keys and the recipe's text (no TF)


@pytest.mark.parametrize("corruptions, severities", [
    (["gaussian_noise", "fgo"], (1, 2)),
    ("most", (1,)),
    ([], (1,)),
    (["fog"], (0, 3)),
    (["fog"], (6,)),
    (["fog"], ()),
    (["fog"], (True,)),
])
def test_bad_selection_is_one_line_naming_the_binding(corruptions, severities):
    with pytest.raises(ValueError) as error:
        corruption_spec.selection(corruptions, severities)
    message = str(error.value)
    assert "train_and_evaluate.corruptions" in message and "\n" not in message, message
    if corruptions == ["gaussian_noise", "fgo"]:
        assert "unknown corruption 'fgo'" in message and "glass_blur" in message


def test_selection_keys_and_summaries():
    assert corruption_spec.selection(None) == ((), ())
    names, severities = corruption_spec.selection("all", [5, 1, 1])
    assert names == corruption_spec.NAMES and len(names) == 15 and severities == (1, 5)
    assert corruption_spec.selection(["fog", "gaussian_noise"], (3,))[0] == ("gaussian_noise", "fog")  # paper order
    from supcon.robust import corrupt as corruptions

    assert tuple(corruptions.CORRUPTIONS) == corruption_spec.NAMES
    keys = corruption_spec.metric_keys(("gaussian_noise", "fog"), (1, 3))
    assert "corruption/gaussian_noise/3/top1" in keys and "corruption/fog/1/ece" in keys
    assert {"corruption/severity_1/top1", "corruption/severity_3/ece", "corruption/mean/top1"} <= set(keys)
    assert len(keys) == 2 * 2 * 2 + 2 * 2 + 1
    cells = {("fog", 1): {"top1": 0.5, "ece": 0.1}, ("gaussian_noise", 1): {"top1": 0.7, "ece": 0.3},
             ("fog", 3): {"top1": 0.2, "ece": 0.2}, ("gaussian_noise", 3): {"top1": 0.4, "ece": 0.4}}
    metrics = corruption_spec.summarize(cells)
    assert metrics["corruption/severity_1/top1"] == pytest.approx(0.6)
    assert metrics["corruption/severity_3/ece"] == pytest.approx(0.3)
    assert metrics["corruption/mean/top1"] == pytest.approx(0.45)
    assert sorted(metrics) == sorted(keys)
    assert corruption_spec.missing_keys({**metrics, "eval/top1": 1.0}, ("gaussian_noise", "fog"), (1, 3)) == []
    assert corruption_spec.missing_keys(metrics, ("fog",), (2,))[0] == "corruption/fog/2/top1"
    for key in ("corruption/mean/top1", "corruption/severity_5/ece", "eval/ece"):
        assert key in wd.RESULT_METRICS
    assert "corruption/jpeg_compression/5/top1" in wd.CORRUPTION_CELL_METRICS


def test_recipe_text_gives_the_request_and_keeps_point_ids(tmp_path):
    recipe = tmp_path / "r.gin"
    recipe.write_text(textwrap.dedent("""\
        METHOD = 'supcon'
        LOSS = @supcon
        train.method = %METHOD
        train.loss = %LOSS
        grid.axes = {'SEED': [0, 1]}
        train.seed = %SEED
        SEED = 0
    """))
    plain = grid.load_recipe(str(recipe))
    assert scoring.requested(plain, {"SEED": 0}) == ((), ())
    params = ["supcon/train_and_evaluate.corruptions = ['fog']", "train_and_evaluate.corruptions = 'all'",
              "SEVERITIES = (2, 4)", "train_and_evaluate.corruption_severities = %SEVERITIES"]
    asked = grid.load_recipe(str(recipe), gin_params=params)
    # The scoped binding applies in the point's METHOD scope and wins over the unscoped one, as in gin.
    assert scoring.requested(asked, {"SEED": 1}) == (("fog",), (2, 4))
    assert [p.id for p in grid.expand(asked)] == [p.id for p in grid.expand(plain)]
    bad = grid.load_recipe(str(recipe), gin_params=["train_and_evaluate.corruptions = ['fgo']"])
    with pytest.raises(ValueError, match="train_and_evaluate.corruptions: unknown corruption 'fgo'"):
        scoring.requested(bad, {"SEED": 0})


# --------------------------------------------------------------------------------------------------------
# The corrupted test sets (in this process)


def _source(n=12, size=10):
    from supcon import data

    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (n, size, size, 1)).astype(np.uint8)
    return data.ArraySource("toy", {"test": (images, rng.randint(0, 3, n))}, num_classes=3)


def _sets(source, limit=None, cache=None):
    from supcon.robust import evaluation as robust_eval

    return robust_eval.SyntheticSets(source, "test", lambda x: x, limit, (10, 10, 1), "toy", cache)


def _all(sets, name, severity, batch):
    return np.concatenate(list(sets.images(name, severity, batch)))


def test_corrupted_images_depend_on_the_example_not_the_batch_and_the_cache_holds_them(tmp_path):
    source = _source()
    sets = _sets(source)
    for name, severity in (("gaussian_noise", 3), ("glass_blur", 2)):  # a TF op and a numpy_function one
        by3, by7 = _all(sets, name, severity, 3), _all(sets, name, severity, 7)
        assert by3.dtype == np.uint8 and by3.shape == (12, 10, 10, 1)
        np.testing.assert_array_equal(by3, by7)
        np.testing.assert_array_equal(_all(_sets(source, limit=5), name, severity, 2), by3[:5])  # a prefix
        clean = np.round(sets.clean.images * 255)
        assert np.abs(by3.astype(float) - clean).max() > 0  # corrupted indeed
    assert not np.array_equal(_all(sets, "gaussian_noise", 1, 4), _all(sets, "gaussian_noise", 2, 4))
    cached = _sets(source, cache=str(tmp_path))
    first = _all(cached, "glass_blur", 2, 5)
    np.testing.assert_array_equal(first, _all(sets, "glass_blur", 2, 3))  # the same images, cached or not
    assert cached.written == 1 and cached.hits == 0
    folder = os.listdir(tmp_path)
    assert len(folder) == 1 and folder[0].startswith("toy-test-10x10x1-n12-")
    again = _sets(source, cache=str(tmp_path))
    np.testing.assert_array_equal(_all(again, "glass_blur", 2, 4), first)
    assert again.hits == 1 and again.written == 0
    files = sorted(os.listdir(tmp_path / folder[0]))
    assert "glass_blur_2.npy" in files and "key.json" in files and not [f for f in files if f.endswith(".tmp")]
    assert _sets(_source(size=10), limit=11, cache=str(tmp_path)).directory != cached.directory  # other key


def test_tfds_sets_naming_and_source_choice(monkeypatch):
    from supcon.robust import evaluation as robust_eval

    assert robust_eval.tfds_config("cifar10", "gaussian_noise", 3) == "cifar10_corrupted/gaussian_noise_3"
    assert robust_eval.tfds_config("cifar10", "glass_blur", 2) == "cifar10_corrupted/frosted_glass_blur_2"
    assert robust_eval.tfds_config("cifar10", "elastic_transform", 5) == "cifar10_corrupted/elastic_5"
    assert robust_eval.tfds_config("imagenet2012:5.1.0", "glass_blur", 1) == "imagenet2012_corrupted/glass_blur_1"
    names, severities = ("fog", "glass_blur"), (1, 2)
    monkeypatch.setattr(robust_eval.data, "prepared_builder", lambda name, data_dir: None)
    assert robust_eval.resolve_source("auto", "cifar10", names, severities, "/nowhere") == "synthetic"
    assert robust_eval.resolve_source("auto", "digits", names, severities, None) == "synthetic"
    with pytest.raises(FileNotFoundError) as error:
        robust_eval.resolve_source("tfds", "cifar10", names, severities, "/nowhere")
    assert "\n" not in str(error.value) and "4 of the 4 requested sets are not prepared" in str(error.value)
    assert "cifar10_corrupted/fog_1" in str(error.value)
    with pytest.raises(ValueError, match="corruption_source = 'tfds' needs dataset cifar10 or imagenet2012"):
        robust_eval.resolve_source("tfds", "digits", names, severities, None)
    asked = []
    monkeypatch.setattr(robust_eval.data, "prepared_builder", lambda name, data_dir: asked.append(name) or object())
    assert robust_eval.resolve_source("auto", "cifar10", names, severities, None) == "tfds"
    assert "cifar10_corrupted/frosted_glass_blur_2" in asked and len(asked) == 4
    with pytest.raises(ValueError, match="corruption_source .* must be one of 'auto', 'synthetic', 'tfds'"):
        robust_eval.resolve_source("imagenet-c", "cifar10", names, severities, None)


def test_tfds_sets_are_read_at_the_model_size(monkeypatch):
    import tensorflow_datasets as tfds

    from supcon.robust import evaluation as robust_eval

    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        monkeypatch.setattr(robust_eval.data, "prepared_builder", lambda name, data_dir: tfds.builder(name))
        ds = robust_eval.tfds_images("cifar10", "glass_blur", 2, "test", None, 4, (28, 28, 3))
        pairs = list(ds.as_numpy_iterator())
    assert len(pairs) == 4 and pairs[0][0].shape == (28, 28, 3) and pairs[0][0].dtype == np.float32
    assert 0.0 <= pairs[0][0].min() and pairs[0][0].max() <= 1.0 and pairs[0][1].dtype == np.int32


def test_calibration_entry_writes_nan_as_null(tmp_path):
    from supcon.robust import evaluation as robust_eval

    logits = np.array([[4.0, 0.0], [0.0, 4.0], [3.0, 0.0]])
    entry = robust_eval.clean_calibration(logits, np.array([0, 0, 0]))
    assert len(entry["bin_edges"]) == 16 and len(entry["counts"]) == 15 and sum(entry["counts"]) == 3
    wd.write_json_atomic(str(tmp_path / wd.CALIBRATION), {"clean": entry})
    written = json.loads((tmp_path / wd.CALIBRATION).read_text())["clean"]
    assert written["accuracy"][0] is None and written["counts"] == entry["counts"]


# --------------------------------------------------------------------------------------------------------
# The trainer (subprocesses: one served trainer process for every request)


def test_bad_corruption_name_fails_before_training(tmp_path):
    cmd = [sys.executable, "-m", "supcon.main", "--workdir", str(tmp_path / "bad"), "--gin_file", TINY,
           "--gin_param", "train_and_evaluate.corruptions = ['fog', 'fgo']"]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    status = wd.read_json(str(tmp_path / "bad" / wd.STATUS))
    assert status["state"] == wd.FAILED and status["step"] == 0
    assert status["reason"].startswith("ValueError: train_and_evaluate.corruptions: unknown corruption 'fgo'")
    assert not (tmp_path / "bad" / wd.CKPT_DIR).exists()  # nothing trained


@pytest.fixture(scope="module")
def scored(built_once):
    """A tiny finished run without corruption metrics, then scored twice in eval mode (served process). Built once
    per session; tests read it."""
    from supcon.experiment.worker import Worker

    def build(tmp):
        server = Worker("supcon.main", ENV, str(tmp / "startup.log"))
        results = {}
        try:
            def request(name, *params):
                log = tmp / f"{name}.log"
                reply = server.request({"op": "train", "workdir": str(tmp / "run"), "gin_files": [TINY],
                                        "gin_params": [*SMALL, *params], "log": str(log)})
                assert reply == {"code": 0, "retire": False}, log.read_text()[-3000:]
                results[name] = wd.read_json(str(tmp / "run" / wd.RESULT))
                results[f"{name} calibration"] = wd.read_json(str(tmp / "run" / wd.CALIBRATION))
                results[f"{name} log"] = log.read_text()

            request("trained")
            request("scored", *TWO_BY_TWO, "train_and_evaluate.mode = 'eval'",
                    "train_and_evaluate.corruption_cache_dir = None")
            request("again", *TWO_BY_TWO, "train_and_evaluate.mode = 'eval'",
                    f"train_and_evaluate.corruption_cache_dir = '{tmp / 'cache'}'")
        finally:
            server.close()
        (tmp / "results.json").write_text(json.dumps(results))

    folder = built_once("robust_scored", build)
    return folder / "run", json.loads((folder / "results.json").read_text())


@pytest.mark.slow  # the scored fixture trains and scores a run on corrupted test sets (18 s per worker)
def test_evaluation_reports_ece_and_writes_calibration(scored):
    _, results = scored
    trained = results["trained"]
    assert 0.0 <= trained["eval/ece"] <= 1.0 and trained["eval/examples"] == 64
    assert not [k for k in trained if k.startswith("corruption/")]
    calibration = results["trained calibration"]
    assert list(calibration) == ["clean"] and sum(calibration["clean"]["counts"]) == 64


@pytest.mark.slow  # the scored fixture (as above)
def test_eval_mode_adds_corruption_metrics_and_keeps_every_field(scored):
    run, results = scored
    trained, rescored = results["trained"], results["scored"]
    assert "stage pretrain" not in results["scored log"]  # no training
    for key, value in trained.items():  # every field kept, the training's totals unchanged
        assert rescored[key] == pytest.approx(value, rel=1e-6), key
    expected = corruption_spec.metric_keys(("gaussian_noise", "fog"), (1, 3))
    assert sorted(k for k in rescored if k.startswith("corruption/")) == sorted(expected)
    for key in expected:
        assert 0.0 <= rescored[key] <= 1.0, key
    assert rescored["corruption/mean/top1"] == pytest.approx(
        np.mean([rescored[f"corruption/{n}/{s}/top1"] for n in ("fog", "gaussian_noise") for s in (1, 3)]))
    calibration = results["scored calibration"]
    assert sorted(calibration) == ["clean", "severity_1", "severity_3"]
    assert sum(calibration["severity_3"]["counts"]) == 2 * 64  # pooled over the two corruptions
    # The training's records stay; the evaluation's go to eval_*.
    assert "corruptions" not in (run / wd.CONFIG).read_text()
    assert "train_and_evaluate.mode = 'eval'" in (run / wd.EVAL_CONFIG).read_text()
    assert (run / wd.EVAL_ENV).exists() and (run / wd.EVAL_OPERATIVE_CONFIG).exists()


@pytest.mark.slow  # the scored fixture (as above)
def test_corruption_metrics_are_deterministic_with_or_without_the_cache(scored):
    _, results = scored
    first, second = results["scored"], results["again"]
    keys = [k for k in first if k.startswith("corruption/")]
    assert keys and {k: first[k] for k in keys} == {k: second[k] for k in keys}  # exactly equal
    assert "no cache" in results["scored log"] and "(0 read, 4 written)" in results["again log"]


# --------------------------------------------------------------------------------------------------------
# The runner scores finished points (a fake trainer)


def run_runner(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), FIXTURES]),
               FAKE_TRAIN_LOG=str(tmp_path / "train.log"), FAKE_EVAL_LOG=str(tmp_path / "eval.log"))
    cmd = [sys.executable, RUNNER, os.path.join(FIXTURES, "grid.gin"), *args, "--runs_dir", str(tmp_path / "runs"),
           "--main_module", "fake_eval_main", "--noreport"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def lines(path):
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


ROW = re.compile(r"^  (needs eval|\S+)\s+([0-9a-f]{8})  (\S+)")


def rows(stdout):
    """[(status, point id, run dir name)] of a --dry_run listing."""
    return [(m[1], m[2], os.path.basename(m[3])) for line in stdout.splitlines() if (m := ROW.match(line))]


def status_of(stdout):
    return {name: status for status, _, name in rows(stdout)}


def test_runner_scores_finished_points_that_lack_the_metrics(tmp_path):
    first = run_runner(tmp_path, "--only", "SEED=0")
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(lines(tmp_path / "train.log")) == 2
    asked = ["--gin_param", "train_and_evaluate.corruptions = ['fog', 'snow']",
             "--gin_param", "train_and_evaluate.corruption_severities = [2]"]
    plain_ids = [pid for _, pid, _ in rows(run_runner(tmp_path, "--dry_run").stdout)]
    dry = run_runner(tmp_path, "--dry_run", *asked)
    assert dry.returncode == 0, dry.stderr
    status = status_of(dry.stdout)
    assert status["method-supcon_loss-supcon_seed-0"] == "needs eval", dry.stdout
    assert status["method-ce_loss-ce_seed-1"] == "new"
    assert "lacks 7 metrics: scored in eval mode, no training" in dry.stdout
    assert [pid for _, pid, _ in rows(dry.stdout)] == plain_ids and len(plain_ids) == 4  # the same point ids

    scored = run_runner(tmp_path, "--eval_only", *asked)
    assert scored.returncode == 0, scored.stdout + scored.stderr
    assert len(lines(tmp_path / "train.log")) == 2 and len(lines(tmp_path / "eval.log")) == 2  # no training
    assert "2 evaluated" in scored.stdout and "2 not finished (not run: --eval_only)" in scored.stdout
    assert "scoring: 7 metrics missing, eval mode" in scored.stdout
    run_dir = tmp_path / "runs" / "grid" / "method-ce_loss-ce_seed-0"
    result = wd.read_json(str(run_dir / wd.RESULT))
    assert result["corruption/snow/2/top1"] == 0.25 and result["eval/top1"] == 0.5 and "train_seconds" in result
    assert wd.read_json(str(run_dir / wd.POINT))["gin_params"] == []  # the point.json of its training

    again = run_runner(tmp_path, "--dry_run", *asked)
    assert status_of(again.stdout)["method-ce_loss-ce_seed-0"] == "done"
    rest = run_runner(tmp_path, *asked)  # trains the two new points (with the setting), skips the scored ones
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert "2 trained, 2 already done" in rest.stdout and len(lines(tmp_path / "eval.log")) == 2
    more = run_runner(tmp_path, "--eval_only", *asked[:2], "--gin_param", "train_and_evaluate.corruption_severities = [1]")
    assert "4 evaluated" in more.stdout, more.stdout  # severity 1 is new to every point


def test_runner_refuses_a_bad_corruption_name_in_one_line(tmp_path):
    proc = run_runner(tmp_path, "--dry_run", "--gin_param", "train_and_evaluate.corruptions = ['fgo']")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "train_and_evaluate.corruptions: unknown corruption 'fgo'" in proc.stderr
