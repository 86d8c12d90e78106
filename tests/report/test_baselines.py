"""Tests for supcon.report.baselines: the trainer's data order and evaluation resize rebuilt without TensorFlow (checked
against TF here), the digits numbers, the run settings read from config.gin, and the report's baselines section."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

from supcon import workdir
from supcon.report import baselines, claims
from supcon.report import baselines_section as report_baselines
from supcon.report import build as report
from supcon.report import claims_section as report_claims
from supcon.report import data as report_data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = baselines.Setting("digits", "train", "test", 1437, "identity", None, 32)
DIGITS_CONFIG = """# Macros:
DATASET = 'digits'
METHOD = 'supcon'

eval_preprocess.method = 'identity'
train_and_evaluate.data_dir = None
train_and_evaluate.dataset = %DATASET
"""


def env(dataset="digits", train_examples=1437):
    return {"git_sha": "0" * 40, "scale": {"dataset": dataset, "train_examples": train_examples}}


def make_run(
    root, values, top1, config=DIGITS_CONFIG, dataset="digits", train_examples=1437, claim_ids=()
):
    slug = "_".join(f"{k.lower()}-{v}" for k, v in values.items())
    path = os.path.join(str(root), slug)
    os.makedirs(path)
    spec = {"rows": ["METHOD"], **({"claims": list(claim_ids)} if claim_ids else {})}
    workdir.write_json_atomic(
        os.path.join(path, workdir.POINT),
        {"recipe_stem": "digits_demo", "values": values, "report": spec},
    )
    workdir.write_json_atomic(os.path.join(path, workdir.ENV), env(dataset, train_examples))
    if config is not None:
        workdir.write_text_atomic(os.path.join(path, workdir.CONFIG), config)
    workdir.write_json_atomic(os.path.join(path, workdir.RESULT), {"eval/top1": top1, "step": 1})
    workdir.write_status(path, "done", step=1)
    return path


def test_digits_baselines_are_fixed_numbers():
    first = baselines.compute(DIGITS)
    assert first.reason == "" and first.image_shape == (8, 8, 1) and first.test_examples == 360
    assert round(first.logreg_top1 * 360) == 349  # 96.94%
    assert round(first.knn_top1 * 360) == 355  # 98.61%
    again = baselines.compute(DIGITS)
    assert (again.logreg_top1, again.knn_top1) == (first.logreg_top1, first.knn_top1)


def test_digits_split_and_order_match_the_trainers(tmp_path):
    from supcon.data import builders, sources

    labels = baselines.load_digits("train")[1]
    assert len(labels) == 1437 and len(baselines.load_digits("test")[1]) == 360
    images, all_labels = builders.digits_arrays()
    for split in ("train", "test"):
        ours = baselines.digits_split(all_labels)[split]
        assert np.array_equal(ours, builders.digits_split(all_labels)[split])
    source = sources.load_source("digits", str(tmp_path))  # prepares the tfds dataset here
    for split in ("train", "test"):
        batch = next(iter(source.split_dataset(split).batch(5000)))
        x, y = baselines.load_digits(split)
        assert np.array_equal(batch["image"].numpy(), x)
        assert np.array_equal(batch["label"].numpy(), y)


def test_tfds_order_is_tfds_hashing():
    from tensorflow_datasets.core import hashing

    keys = np.arange(50)
    hasher = hashing.Hasher("train")
    expected = sorted(range(50), key=lambda k: hasher.hash_key(int(keys[k])))
    assert baselines.tfds_order(keys, "train").tolist() == expected
    assert baselines.tfds_order(keys, "test").tolist() != expected  # the split name is the salt


@pytest.mark.parametrize(
    "shape, method, size, padding",
    [
        ((28, 28, 1), "resize_then_crop", 14, 0),  # the Fashion-MNIST recipes
        ((28, 28, 1), "identity", 14, 32),
        ((28, 28, 1), "identity", 20, 0),
        ((8, 8, 1), "identity", None, 32),  # the digits
        ((8, 8, 1), "identity", 12, 0),  # upsampling
        ((32, 32, 3), "resize_then_crop", 24, 8),
        ((32, 32, 3), "crop_then_resize", 24, 8),
        ((30, 36, 3), "resize_then_crop", (20, 24), 4),
    ],
)
def test_eval_preprocess_matches_tensorflow(shape, method, size, padding):
    import tensorflow as tf

    from supcon.augment import eval_preprocess

    images = np.random.default_rng(0).integers(0, 256, size=(3, *shape), dtype=np.uint8)
    ours = baselines.eval_preprocess(
        images, method, size if not isinstance(size, int) else (size, size), padding
    )
    theirs = np.stack(
        [
            eval_preprocess(
                tf.image.convert_image_dtype(image, tf.float32), method=method, image_size=size,
                crop_padding=padding,
            ).numpy()
            for image in images
        ]
    )  # fmt: skip
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)


def test_halving_is_a_two_by_two_mean_pool():
    images = np.random.default_rng(1).integers(0, 256, size=(5, 28, 28, 1), dtype=np.uint8)
    ours = baselines.eval_preprocess(images, "resize_then_crop", (14, 14), 0)
    pooled = images.astype(np.float64).reshape(5, 14, 2, 14, 2, 1).mean(axis=(2, 4)) / 255
    np.testing.assert_allclose(ours, pooled, atol=1e-6, rtol=0)


def test_run_setting_reads_config_gin(tmp_path):
    (tmp_path / workdir.CONFIG).write_text(
        "IMAGE_SIZE = 14\nMETHOD = 'supcon'\nDATASET = 'fashion_mnist'\n"
        "eval_preprocess.method = 'resize_then_crop'\neval_preprocess.image_size = %IMAGE_SIZE\n"
        "eval_preprocess.crop_padding = 0\nsupcon/eval_preprocess.crop_padding = 2\n"
        "cross_entropy/eval_preprocess.crop_padding = 4\ntrain_and_evaluate.dataset = %DATASET\n"
        "train_and_evaluate.max_examples = 5000\ntrain_and_evaluate.data_dir = '/data'\n"
    )
    setting = baselines.run_setting(str(tmp_path), env("fashion_mnist", 5000))
    assert setting == baselines.Setting(
        "fashion_mnist", "train", "test", 5000, "resize_then_crop", (14, 14), 2, "/data"
    )
    fell_back = baselines.run_setting(str(tmp_path), env("digits", 1437))  # the trainer's fallback
    assert (fell_back.dataset, fell_back.data_dir, fell_back.train_split) == (
        "digits",
        None,
        "train",
    )
    text = (tmp_path / workdir.CONFIG).read_bytes()
    os.remove(tmp_path / workdir.CONFIG)
    (tmp_path / workdir.CONFIG_GZ).write_bytes(gzip.compress(text))  # as a run record keeps it
    assert baselines.run_setting(str(tmp_path), env("fashion_mnist", 5000)) == setting
    os.remove(tmp_path / workdir.CONFIG_GZ)
    with pytest.raises(baselines.NotComputed, match="no config.gin in the run directory"):
        baselines.run_setting(str(tmp_path), env())


def test_the_report_shows_and_caches_the_baselines(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    for method, tops in (("supcon", (0.99, 0.995)), ("cross_entropy", (0.95, 0.96))):
        for seed, top1 in enumerate(tops):
            make_run(root, {"METHOD": method, "SEED": seed}, top1)
    text = open(report.write_report(str(root), str(tmp_path / "out"), plots=False)).read()
    section = text.split("## Raw-pixel baselines")[1].split("\n## ")[0]
    data = "scikit-learn digits: the first 1437 of train, 8×8×1 (identity), all 360 of test"
    assert f"| pixels + logistic regression | 96.94 | {data} |" in section
    assert f"| pixels + 5-NN | 98.61 | {data} |" in section
    assert "| METHOD | eval/top1 (%) | − pixels logistic regression (pp, 95% CI) |" in section
    # mean 0.9925, sd 0.0035355, se 0.0025, t(1, 0.975) = 12.706: half-width 3.18 pp
    assert "| supcon | 99.25 ± 0.35 (2) | +2.31 [-0.87, +5.48] | +0.64 [-2.54, +3.82] |" in section
    assert (tmp_path / "out" / "runs" / baselines.CACHE).is_file()  # beside the run records, committed with them
    assert not (root / baselines.CACHE).exists()
    # No claim named: the report still opens with a Claims section that says so, beside the pixel comparison.
    claims = text.split("## Claims")[1].split("\n## ")[0]
    assert "**No claim of the paper is tested by this grid** (`report.claims` names none)." in claims
    assert "**Against raw pixels:** logistic regression scores 96.94%" in claims
    assert "rows whose mean is at least 5 points above it (the CPU-scale bar): none." in claims

    def no_compute(setting):
        raise AssertionError("computed again despite the cache")

    monkeypatch.setattr(baselines, "compute", no_compute)
    assert open(report.write_report(str(root), str(tmp_path / "out"), plots=False)).read() == text


def test_unavailable_data_is_reported_with_the_reason(tmp_path, monkeypatch):
    make_run(tmp_path / "a", {"SEED": 0}, 0.7, dataset="imagenet2012", train_examples=100)
    text = open(report.write_report(str(tmp_path / "a"), str(tmp_path / "out"), plots=False)).read()
    assert (
        "Not computed: ImageNet: dataset 'imagenet2012': the baseline reads only the bundled digits and "
        "MNIST-family IDX files." in text
    )
    monkeypatch.setenv(baselines.DATA_DIR_ENV, str(tmp_path / "empty"))
    monkeypatch.setitem(baselines.IDX_FOLDERS, "fashion_mnist", (("x",), (str(tmp_path / "none"),)))
    make_run(tmp_path / "b", {"SEED": 0}, 0.7, dataset="fashion_mnist", train_examples=5000)
    text = open(report.write_report(str(tmp_path / "b"), str(tmp_path / "out"), plots=False)).read()
    assert "Not computed: Fashion-MNIST: the original fashion_mnist IDX files are not here" in text
    assert not (tmp_path / "out" / "runs" / baselines.CACHE).exists()  # unavailable data is not cached
    make_run(tmp_path / "c", {"SEED": 0}, 0.7, config=None)
    text = open(report.write_report(str(tmp_path / "c"), str(tmp_path / "out"), plots=False)).read()
    assert "Not computed: no config.gin in the run directory" in text


def test_baselines_import_no_tensorflow():
    code = (
        "import sys; from supcon.report import baselines, build; "
        "b = baselines.compute(baselines.Setting('digits', 'train', 'test', 100, 'identity', (4, 4), 0)); "
        "assert b.reason == '' and b.image_shape == (4, 4, 1), b; "
        "assert 'tensorflow' not in sys.modules, 'tf imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_the_bar_lists_rows_whose_mean_is_five_points_above_pixels():
    setting = baselines.Setting("fashion_mnist", "train", "test", 100, "identity", (14, 14), 0, None)
    b = baselines.Baseline(setting, logreg_top1=0.80, knn_top1=0.81)
    runs = [
        report_data.Run(slug=f"{m}-{s}", path=None, values={"METHOD": m, "SEED": s}, state="done",
                        result={"eval/top1": top1})
        for m, tops in (("supcon", (0.85, 0.86, 0.855)), ("simclr", (0.84, 0.85, 0.845)), ("ce", (0.9, 0.7, 0.8)))
        for s, top1 in enumerate(tops)
    ]
    _, above, bar, _ = report_baselines.comparison(runs, ["METHOD"], b)
    assert bar == ["supcon"]  # means: supcon 85.5 (+5.5), simclr 84.5 (+4.5), ce 80.0 (+0.0)
    assert above == ["simclr", "supcon"]  # 95% intervals above 80: +4.5 +- 1.2 and +5.5 +- 1.2; ce's is not


# -------------------------------------------------------------------------------------------------------------
# Verdicts held to the CPU-scale bar


def only_verdict(verdicts):
    assert len(verdicts) == 1, verdicts
    return verdicts[0]


def runs_of(table, axis="METHOD", state="done"):
    """Run objects from {axis value: [top1 of seed 0, seed 1, ...]}."""
    return [
        report_data.Run(slug=f"{value}-{s}", path=None, values={axis: value, "SEED": s}, state=state,
                        result={"eval/top1": top1} if state == "done" else {})
        for value, tops in table.items()
        for s, top1 in enumerate(tops)
    ]  # fmt: skip


def claims_text(runs, ids, within, pixel_top1):
    return "\n".join(
        report_claims.claims_section(runs, {"claims": ids}, within, real_data=True, pixel_top1=pixel_top1)
    )


def test_a_verdict_resting_on_a_row_below_the_bar_says_so(tmp_path, monkeypatch):
    def fake(setting):  # pixel logistic regression at 80%: the bar is 85%
        return baselines.Baseline(setting, 0.80, 0.81, (8, 8, 1), 360)

    monkeypatch.setattr(baselines, "compute", fake)
    ids = ["table2_supcon_gt_ce", "table2_supcon_gt_simclr"]
    table = {
        "supcon": (0.86, 0.87, 0.865),
        "cross_entropy": (0.85, 0.861, 0.854),
        "simclr": (0.805, 0.81, 0.815),
    }
    root = tmp_path / "runs"
    for method, tops in table.items():
        for seed, top1 in enumerate(tops):
            make_run(root, {"METHOD": method, "SEED": seed}, top1, claim_ids=ids)
    text = open(report.write_report(str(root), str(tmp_path / "out"), plots=False)).read()
    section = text.split("## Claims")[1].split("\n## ")[0]
    assert (
        "**2 of 2 claims reproduced at this scale (0 contradicted, 0 inconclusive). 1 of 2 rests on rows below "
        "the CPU-scale bar (raw-pixel logistic regression + 5 points): it measures the training budget, not the "
        "method.**"
    ) in section
    rows = {i: next(r for r in section.splitlines() if f"`{i}`" in r) for i in ids}
    # simclr's mean is 81.0: +1.00 above pixels; supcon (86.5) and cross_entropy (85.5) clear the bar
    assert rows["table2_supcon_gt_simclr"].endswith(
        "| **reproduced**; below the bar: METHOD=simclr (+1.00 over pixels) |"
    )
    assert rows["table2_supcon_gt_ce"].endswith("| **reproduced** |")
    assert report_claims.BAR_LEGEND in section
    assert "rows whose mean is at least 5 points above it (the CPU-scale bar): cross_entropy, supcon." in section


def test_verdicts_on_rows_above_the_bar_get_no_qualifier():
    runs = runs_of({"supcon": (0.86, 0.87, 0.865), "cross_entropy": (0.85, 0.861, 0.854)})
    text = claims_text(runs, ["table2_supcon_gt_ce"], ["METHOD"], pixel_top1=0.80)
    assert "**1 of 1 claim reproduced at this scale (0 contradicted, 0 inconclusive).**" in text
    assert "| **reproduced** |" in text and "below the bar:" not in text
    assert report_claims.BAR_LEGEND in text  # the reader learns that the verdicts were checked
    # A lower bar row: cross_entropy's mean 85.5 is 4.5 points above 81%; the qualifier names only it.
    text = claims_text(runs, ["table2_supcon_gt_ce"], ["METHOD"], pixel_top1=0.81)
    assert "| **reproduced**; below the bar: METHOD=cross_entropy (+4.50 over pixels) |" in text
    assert "1 of 1 rests on rows below the CPU-scale bar" in text


def test_a_rise_is_held_to_the_bar_at_its_highest_value_only():
    claim = claims.load_claims()["fig4c_epochs_increasing"]
    curve = {6: (0.70, 0.71), 12: (0.78, 0.79), 25: (0.84, 0.845), 50: (0.86, 0.865)}
    runs = runs_of(curve, axis="PRETRAIN_EPOCHS")
    verdict = only_verdict(claims.evaluate(claim, runs, ["PRETRAIN_EPOCHS"]))
    assert [label for label, _ in verdict.groups][-1] == "PRETRAIN_EPOCHS=50"
    assert report_baselines.below_bar(verdict, 0.80) == []  # 6 and 12 epochs are low by design: not judged
    text = claims_text(runs, [claim.id], ["PRETRAIN_EPOCHS"], pixel_top1=0.80)
    assert "| **reproduced** |" in text and "below the bar:" not in text
    assert report_baselines.below_bar(verdict, 0.82) == [("PRETRAIN_EPOCHS=50", pytest.approx(4.25))]
    text = claims_text(runs, [claim.id], ["PRETRAIN_EPOCHS"], pixel_top1=0.82)
    assert "| **reproduced**; below the bar: PRETRAIN_EPOCHS=50 (+4.25 over pixels) |" in text
    # The highest value still training is not judged: the curve tested ends at 25 epochs (84.25%, +4.25).
    runs = runs_of({6: (0.70, 0.71), 25: (0.84, 0.845)}, axis="PRETRAIN_EPOCHS")
    runs += runs_of({100: (None, None)}, axis="PRETRAIN_EPOCHS", state="partial")
    verdict = only_verdict(claims.evaluate(claim, runs, ["PRETRAIN_EPOCHS"]))
    assert [label for label, _ in verdict.groups] == [
        "PRETRAIN_EPOCHS=6", "PRETRAIN_EPOCHS=25", "PRETRAIN_EPOCHS=100",
    ]  # fmt: skip
    assert report_baselines.below_bar(verdict, 0.80) == [("PRETRAIN_EPOCHS=25", pytest.approx(4.25))]
    # Along SEVERITY the models are the clean runs' (severity 0); corrupted accuracy is not held to the bar.
    severity = claims.load_claims()["table6_ece_increasing_with_severity"]
    groups = (("SEVERITY=0", tuple(runs_of({0: (0.9, 0.9)}, "SEVERITY"))),
              ("SEVERITY=5", tuple(runs_of({5: (0.5, 0.5)}, "SEVERITY"))))  # fmt: skip
    verdict = claims.Verdict(severity, "", "reproduced", groups=groups)
    assert report_baselines.below_bar(verdict, 0.80) == []
    assert report_baselines.below_bar(verdict, 0.86) == [("SEVERITY=0", pytest.approx(4.0))]


def test_without_pixel_baselines_the_claims_section_is_unchanged():
    runs = runs_of({"supcon": (0.86, 0.87, 0.865), "simclr": (0.805, 0.81, 0.815)})
    ids, within = ["table2_supcon_gt_simclr"], ["METHOD"]
    plain = report_claims.claims_section(runs, {"claims": ids}, within)
    assert report_claims.claims_section(runs, {"claims": ids}, within, pixel_top1=None) == plain
    text = "\n".join(plain)
    assert "**1 of 1 claim reproduced at this scale (0 contradicted, 0 inconclusive).**" in text
    assert "| **reproduced** |" in text and "below the bar" not in text and "CPU-scale" not in text
    assert plain[-2] == report_claims.CLAIMS_LEGEND


def test_several_data_settings_hold_no_verdict_to_one_bar(tmp_path):
    root = tmp_path / "runs"
    make_run(root, {"METHOD": "supcon", "SEED": 0}, 0.9, train_examples=1437)
    make_run(root, {"METHOD": "simclr", "SEED": 0}, 0.9, train_examples=1000)
    runs = report_data.load_runs(str(root))
    lines, claim_lines, pixel_top1 = report_baselines.baselines_section(runs, str(root), ["METHOD"])
    assert "The runs use several data settings: compare each row with the baseline of its data." in lines
    assert (claim_lines, pixel_top1) == ([], None)


def test_the_pixel_line_says_all_rows_when_every_row_of_many_clears(tmp_path, monkeypatch):
    monkeypatch.setattr(baselines, "compute", lambda setting: baselines.Baseline(setting, 0.80, 0.81, (8, 8, 1), 360))
    assert report_baselines._listed(["a", "b"], 2) == "a, b"  # two rows are named
    assert report_baselines._listed(["a", "b"], 3) == "a, b"
    assert report_baselines._listed([], 3) == "none"
    root = tmp_path / "runs"
    for method in ("supcon", "cross_entropy", "simclr"):
        for seed, top1 in enumerate((0.9, 0.91, 0.905)):
            make_run(root, {"METHOD": method, "SEED": seed}, top1, claim_ids=["table2_supcon_gt_ce"])
    text = open(report.write_report(str(root), str(tmp_path / "out"), plots=False)).read()
    section = text.split("## Claims")[1].split("\n## ")[0]
    assert (
        "rows whose 95% interval lies above logistic regression: all 3 rows; rows whose mean is at least 5 points "
        "above it (the CPU-scale bar): all 3 rows."
    ) in section
