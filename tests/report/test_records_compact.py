"""Records in a larger form (an older version's: config.gin not gzipped, float32 embeddings with int32 labels; or
copied from a smaller report, with more curve points) are rewritten in the compact form when their report is built,
their point, status, result and evaluation lines unchanged; compact records, unfinished and damaged ones are left.

Synthetic records, written with the workdir helpers as the reporter writes them.
"""

import gzip
import json
import os

import numpy as np
from test_report_provenance import make_run

from supcon import workdir
from supcon.report import build as report
from supcon.report import records

CONFIG = b"# config of a run\nSEED = 0\n" * 40


def make_record(folder, seed, train_lines=150, state="done"):
    """A record in the older form: a synthetic run of point SEED=seed (test_report_provenance.make_run) with its
    config.gin, float32 2-D embeddings with int32 labels, and `train_lines` training lines in each of two stages."""
    path = make_run(folder, seed, state=state)
    with open(os.path.join(path, workdir.CONFIG), "wb") as f:
        f.write(CONFIG)
    lines = [{"kind": "train", "stage": stage, "step": i, "loss": 1.0 / (i + 1)}
             for stage in ("pretrain", "linear") for i in range(train_lines)]
    lines.append({"kind": "eval", "step": train_lines, "eval/top1": 0.8 + seed / 100})
    with open(os.path.join(path, workdir.METRICS), "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    rng = np.random.default_rng(seed)
    np.savez_compressed(os.path.join(path, workdir.EMBEDDINGS), embeddings=rng.normal(size=(50, 2)).astype(np.float32),
                        labels=rng.integers(0, 10, 50).astype(np.int32))
    return path


def snapshot(path):
    return {name: open(os.path.join(path, name), "rb").read() for name in sorted(os.listdir(path))}


def test_an_older_record_is_rewritten_in_the_compact_form(tmp_path):
    report_dir = str(tmp_path / "demo")
    folder = records.records_dir(report_dir)
    path = make_record(folder, 0)
    before = snapshot(path)
    with np.load(os.path.join(path, workdir.EMBEDDINGS)) as found:
        emb, labels = found["embeddings"], found["labels"]

    assert records.compact(report_dir) == ["seed-0"]
    after = snapshot(path)
    assert set(after) == set(before) - {workdir.CONFIG} | {workdir.CONFIG_GZ}
    assert gzip.decompress(after[workdir.CONFIG_GZ]) == CONFIG
    for name in (workdir.POINT, workdir.STATUS, workdir.RESULT, workdir.ENV):
        assert after[name] == before[name], name
    kept = [json.loads(line) for line in after[workdir.METRICS].decode().splitlines()]
    for stage in ("pretrain", "linear"):  # one record: the full CURVE_POINTS, first and last kept
        steps = [r["step"] for r in kept if r.get("stage") == stage]
        assert len(steps) == records.CURVE_POINTS and steps[0] == 0 and steps[-1] == 149
    assert [r for r in kept if r["kind"] == "eval"] == [{"kind": "eval", "step": 150, "eval/top1": 0.8}]
    with np.load(os.path.join(path, workdir.EMBEDDINGS)) as small:  # the same 2-D points: no second PCA
        assert small["embeddings"].dtype == np.float16 and small["labels"].dtype == np.uint8
        np.testing.assert_allclose(small["embeddings"], emb, rtol=1e-3, atol=1e-3)
        assert np.array_equal(small["labels"], labels)
    assert len(after[workdir.METRICS]) < len(before[workdir.METRICS])

    assert records.compact(report_dir) == []  # compact now: left as it is
    assert snapshot(path) == after


def test_a_record_copied_into_a_larger_report_keeps_that_report_s_curve_points(tmp_path):
    report_dir = str(tmp_path / "demo")
    folder = records.records_dir(report_dir)
    for seed in range(20):
        make_record(folder, seed, train_lines=60)
    records.compact(report_dir)  # 20 records: 50 curve points each
    wide = os.path.join(folder, "seed-0")
    lines = [{"kind": "train", "stage": "pretrain", "step": i, "loss": 1.0} for i in range(80)]
    with open(os.path.join(wide, workdir.METRICS), "w") as f:  # as a record of a 10-run report keeps them
        f.writelines(json.dumps(line) + "\n" for line in lines)

    assert records.compact(report_dir) == ["seed-0"]
    kept = [json.loads(line) for line in open(os.path.join(wide, workdir.METRICS))]
    assert len(kept) == records.curve_points(20) == 50


def test_unfinished_damaged_and_compact_records_are_left_alone(tmp_path):
    report_dir = str(tmp_path / "demo")
    folder = records.records_dir(report_dir)
    running = make_record(folder, 0, state="running")
    damaged = make_record(folder, 1)
    os.remove(os.path.join(damaged, workdir.CONFIG))
    with open(os.path.join(damaged, workdir.METRICS), "a") as f:
        f.write("{not json\n")
    with open(os.path.join(damaged, workdir.EMBEDDINGS), "wb") as f:
        f.write(b"not an npz")
    compact = make_record(folder, 2, train_lines=10)
    records.write_record(compact, compact)
    before = {path: snapshot(path) for path in (running, damaged, compact)}

    assert records.compact(report_dir) == []
    assert {path: snapshot(path) for path in before} == before


def test_building_a_report_compacts_its_records_and_reports_the_same(tmp_path):
    """A report built from older-form records says what one built from the compact records says, and leaves its
    records compact."""
    old, new = str(tmp_path / "old" / "demo"), str(tmp_path / "new" / "demo")
    for seed in range(3):
        made = make_record(records.records_dir(old), seed)
        records.write_record(made, os.path.join(records.records_dir(new), f"seed-{seed}"))
    got = [report.write_report(records.records_dir(d), d, plots=False, command="demo") for d in (old, new)]

    assert open(got[0]).read() == open(got[1]).read()
    for seed in range(3):
        slug = f"seed-{seed}"
        compacted, written = (snapshot(os.path.join(records.records_dir(d), slug)) for d in (old, new))
        assert compacted == written, slug
