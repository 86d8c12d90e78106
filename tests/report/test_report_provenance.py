"""The report's header names the runs that came from uncommitted code and links their patches in the run records.

Synthetic run directories (written with the workdir helpers, as the trainer would): a clean run, two runs from
the same uncommitted change (one finished, one failed), a finished run from another change, a running one, and an
older run whose env.json says dirty without a patch.
"""

import hashlib
import os
import re

from supcon import workdir
from supcon.report import build as report
from supcon.report import data as report_data
from supcon.report import header as report_header

SHA = "0123456789abcdef0123456789abcdef01234567"
PATCH_A = b"diff --git a/supcon/losses.py b/supcon/losses.py\n--- a/supcon/losses.py\n+++ b/supcon/losses.py\n"
PATCH_B = b"diff --git a/recipes/new.gin b/recipes/new.gin\nnew file mode 100644\n"


def make_run(root, seed, state="done", patch=None, paths=(), dirty=None, **env_fields):
    """A run of point SEED=seed; `patch`: the bytes of its uncommitted.patch (None: clean code); `env_fields`: more
    env.json fields."""
    slug = f"seed-{seed}"
    path = os.path.join(root, slug)
    os.makedirs(path)
    workdir.write_json_atomic(os.path.join(path, workdir.POINT), {
        "recipe": "recipes/demo.gin", "recipe_stem": "demo", "id": f"id{seed}", "slug": slug,
        "bindings": {"SEED": str(seed)}, "values": {"SEED": seed}, "report": {"rows": ["SEED"]}, "header": [],
    })
    env = {"git_sha": SHA, "git_dirty": patch is not None if dirty is None else dirty,
           "versions": {"python": "3.11.2"}, "scale": {"dataset": "digits"}, **env_fields}
    if patch is not None:
        workdir.write_text_atomic(os.path.join(path, workdir.PATCH), patch)
        env.update(git_dirty_paths=list(paths), git_patch=workdir.PATCH,
                   git_patch_sha256=hashlib.sha256(patch).hexdigest())
    workdir.write_json_atomic(os.path.join(path, workdir.ENV), env)
    if state == "done":
        workdir.write_json_atomic(os.path.join(path, workdir.RESULT), {
            "eval/top1": 0.8, "eval/top5": 0.99, "step": 10, "train_seconds": 5.0, "images_per_second": 100.0,
        })
        workdir.write_status(path, "done", step=10)
    else:
        workdir.write_status(path, state, step=5, reason="loss is NaN at step 5" if state == "failed" else "")
    return path


def _header(text: str) -> str:
    return text.split("## ")[0]


def test_the_header_names_the_runs_from_uncommitted_code_and_links_their_patches(tmp_path):
    runs_dir = str(tmp_path / "runs" / "demo")
    make_run(runs_dir, 0)
    many = ("supcon/losses.py", "supcon/train/run.py", "recipes/a.gin", "recipes/b.gin")
    make_run(runs_dir, 1, patch=PATCH_A, paths=many)
    make_run(runs_dir, 2, state="failed", patch=PATCH_A, paths=many)
    make_run(runs_dir, 3, patch=PATCH_B, paths=("recipes/new.gin",))
    make_run(runs_dir, 4, state="running", patch=PATCH_B, paths=("recipes/new.gin",))
    make_run(runs_dir, 5, dirty=True)  # an env.json from before patches were kept
    out = tmp_path / "reports" / "demo"
    head = _header(open(report.write_report(runs_dir, str(out), plots=False)).read())

    a, b = hashlib.sha256(PATCH_A).hexdigest()[:8], hashlib.sha256(PATCH_B).hexdigest()[:8]
    assert "- **Code:** git `0123456789ab` (1 run), `0123456789ab` (dirty) (5 runs)." in head
    assert (
        "- **Uncommitted code:** 5 of 6 runs ran with changes to supcon/, runner.py or recipes/ that are not in "
        "their commit; `git apply` of a run's patch on its commit gives the code it ran:\n"
        f"  - patch `{a}` (supcon/losses.py, supcon/train/run.py, recipes/a.gin and 1 more): "
        "[`seed-1`](runs/seed-1/uncommitted.patch), [`seed-2`](runs/seed-2/uncommitted.patch)\n"
        f"  - patch `{b}` (recipes/new.gin): [`seed-3`](runs/seed-3/uncommitted.patch), "
        "`seed-4` (not finished: its patch is in its run dir)\n"
        "  - no patch recorded (env.json from before patches were kept): `seed-5`\n"
    ) in head
    assert "seed-0" not in head  # the clean run is not named
    # Every link resolves, from the README, to the run's record, which holds the run's patch as it was.
    links = re.findall(r"\]\(([^)]+)\)", head)
    assert links == [f"runs/seed-{s}/uncommitted.patch" for s in (1, 2, 3)]
    for link, patch in zip(links, (PATCH_A, PATCH_A, PATCH_B), strict=True):
        assert (out / link).read_bytes() == patch

    # Rebuilt from the records alone (runner.py --report_only), the header is the same for the recorded runs.
    rebuilt = _header(open(report.write_report(str(out / "runs"), str(tmp_path / "again"), plots=False)).read())
    assert "[`seed-1`](runs/seed-1/uncommitted.patch), [`seed-2`](runs/seed-2/uncommitted.patch)" in rebuilt
    assert f"  - patch `{b}` (recipes/new.gin): [`seed-3`](runs/seed-3/uncommitted.patch)\n" in rebuilt


def test_no_line_when_every_run_is_clean(tmp_path):
    runs_dir = str(tmp_path / "runs" / "demo")
    for seed in (0, 1):
        make_run(runs_dir, seed)
    runs = report_data.load_runs(runs_dir)
    assert report_header.uncommitted_code(runs) == []
    lines = report_header.provenance(runs)
    assert [line for line in lines if line.startswith("- **Code:**")] == ["- **Code:** git `0123456789ab`."]
    assert not any("Uncommitted" in line for line in lines)


def test_the_header_says_which_runs_computed_in_another_precision(tmp_path):
    runs_dir = str(tmp_path / "runs" / "demo")
    bf16 = ["avx2", "avx512f", "avx512_bf16"]
    for seed in range(3):
        make_run(runs_dir, seed, mixed_precision=True, cpu_flags=bf16)
    make_run(runs_dir, 3, mixed_precision=False, cpu_flags=["avx2"])
    make_run(runs_dir, 4, state="failed", mixed_precision=False, cpu_flags=["avx2"])
    make_run(runs_dir, 5, state="running", mixed_precision=False, cpu_flags=["avx2"])  # not finished
    make_run(runs_dir, 6, mixed_precision=True)  # env.json from before cpu_flags were recorded
    lines = report_header.precisions(report_data.load_runs(runs_dir))
    assert lines == [
        "- **Precision:** the runs differ: 3 in mixed bfloat16 (CPU flags: avx2, avx512f, avx512_bf16); "
        "2 in float32 (CPU flags: avx2): `seed-3`, `seed-4`; 1 in mixed bfloat16 (CPU flags: not recorded): "
        "`seed-6`. `train_and_evaluate.mixed_precision` decides (as bound, or 'auto': bfloat16 only on CPUs "
        "with bfloat16 instructions, unless the runner's --auto_precision says); the groups round differently."
    ]
    with open(report.write_report(runs_dir, str(tmp_path / "report"), plots=False)) as f:
        assert lines[0] in _header(f.read())


def test_no_precision_line_when_every_run_agrees(tmp_path):
    runs_dir = str(tmp_path / "runs" / "demo")
    make_run(runs_dir, 0, mixed_precision=True, cpu_flags=["avx2", "avx512_bf16"])
    make_run(runs_dir, 1, mixed_precision=True, cpu_flags=["avx2", "avx512_bf16"])
    make_run(runs_dir, 2, mixed_precision=True)  # same precision, flags not recorded: no line
    make_run(runs_dir, 3)  # no mixed_precision in env.json: not counted
    assert report_header.precisions(report_data.load_runs(runs_dir)) == []


def test_the_wall_time_counts_a_shared_pretraining_once_and_names_who_shared(tmp_path):
    """grid.share_pretraining: a point that trained only its final stage restored its source's train_seconds too;
    point.json's pretraining_seconds says how much of its own is the source's."""
    runs_dir = str(tmp_path / "runs" / "demo")
    make_run(runs_dir, 0)
    sharer = make_run(runs_dir, 1)
    point = workdir.read_json(os.path.join(sharer, workdir.POINT))
    point.update({workdir.PRETRAINING_FROM: "runs/demo/seed-0", workdir.PRETRAINING_SECONDS: 4.0})
    workdir.write_json_atomic(os.path.join(sharer, workdir.POINT), point)
    head = _header(open(report.write_report(runs_dir, str(tmp_path / "out"), plots=False)).read())
    assert ("- **Train wall time:** 6 s in total over the finished points, each shared pretraining counted once "
            "(4 s less) (longest 5 s).") in head  # 5 + 5 - 4
    assert "`seed-1` from `seed-0`" in head and "1 point trained only its final stage" in head


def test_the_scale_lists_numbers_in_numeric_order(tmp_path):
    runs_dir = str(tmp_path / "runs" / "demo")
    for seed, batch in enumerate((1024, 64, 256, 128)):
        make_run(runs_dir, seed, scale={"dataset": "digits", "global_batch_size": batch, "hardware": "2 CPU cores"})
    scale = report_header.scale_values(report_data.load_runs(runs_dir))
    assert scale["global_batch_size"] == ["64", "128", "256", "1024"]
    assert "at global batch 64 / 128 / 256 / 1024, on 2 CPU cores" in report_header.scale_sentence(scale)
    make_run(runs_dir, 9, scale={"dataset": "mnist"})
    assert report_header.scale_values(report_data.load_runs(runs_dir))["dataset"] == ["digits", "mnist"]
