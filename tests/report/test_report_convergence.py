"""The Convergence section: learning curves, doublings and where each row plateaus (no TensorFlow)."""

import pytest
from test_report import make_run

from supcon.report import build as report
from supcon.report import convergence as report_convergence
from supcon.report import spec as report_spec
from supcon.report.data import Run


def run(epochs, top1, method="supcon", state="done", seed=0):
    values = {"METHOD": method, "PRETRAIN_EPOCHS": epochs, "SEED": seed}
    result = {"eval/top1": top1} if state == "done" else {}
    return Run(slug=f"{method}-{epochs}-{seed}", path=None, values=values, state=state, result=result)


def test_curve_averages_finished_runs_per_length_in_order():
    runs = [run(50, 0.80), run(25, 0.70, seed=0), run(25, 0.72, seed=1), run(12, 0.9, state="failed")]
    assert report_convergence.curve(runs, "PRETRAIN_EPOCHS", "eval/top1") == [
        (25.0, pytest.approx(0.71), 2), (50.0, 0.80, 1)
    ]


def test_doublings_need_both_lengths_and_give_percentage_points():
    points = [(6.0, 0.60, 1), (12.0, 0.70, 1), (25.0, 0.75, 1), (40.0, 0.755, 1), (80.0, 0.76, 1)]
    steps = report_convergence.doublings(points)
    # 25 counts as the double of 12 (within 5%); 25 -> 40 is no doubling
    assert [(a, b) for a, b, _ in steps] == [(6.0, 12.0), (12.0, 25.0), (40.0, 80.0)]
    assert [round(c, 6) for _, _, c in steps] == [10.0, 5.0, 0.5]


@pytest.mark.parametrize(
    "changes, expected",
    [
        ([5.0, 2.0, 0.5], 25.0),  # only the last doubling is under a point
        ([0.4, 0.9, 0.2], 6.0),  # flat from the start
        ([0.5, 1.5, 0.2], 25.0),  # a later rise of >= 1 point moves the plateau past it
        ([3.0, 2.0, 1.0], None),  # exactly one point is not < 1
        ([0.2, 0.3, -1.2], None),  # a drop of more than a point is not a plateau either
    ],
)
def test_plateau_is_where_every_later_doubling_moves_less_than_a_point(changes, expected):
    lengths = [6.0, 12.0, 25.0, 50.0]
    steps = [(lengths[i], lengths[i + 1], c) for i, c in enumerate(changes)]
    assert report_convergence.plateau(steps, 50.0) == expected


def test_a_missing_length_breaks_the_chain():
    # 6 -> 12 is flat, but 25 is missing: nothing is judged across the gap to 50.
    points = [(6.0, 0.80, 1), (12.0, 0.805, 1), (50.0, 0.83, 1)]
    steps = report_convergence.doublings(points)
    assert report_convergence.plateau(steps, 50.0) is None
    assert report_convergence._verdict(steps, 50.0) == "cannot judge: the doublings up to 50 are not all measured"


def test_report_section_and_claims_line(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    spec = {"rows": ["METHOD"], "columns": ["PRETRAIN_EPOCHS"], "metrics": ["eval/top1"],
            "convergence": "PRETRAIN_EPOCHS"}
    curves = {"supcon": {10: 0.80, 20: 0.85, 40: 0.855}, "simclr": {10: 0.70, 20: 0.73, 40: 0.76}}
    for method, curve in curves.items():
        for epochs, top1 in curve.items():
            for seed in (0, 1):
                make_run(str(root), {"METHOD": method, "PRETRAIN_EPOCHS": epochs, "SEED": seed}, spec=spec,
                         stem="curves", top1=top1 + 0.002 * seed)
    make_run(str(root), {"METHOD": "ce", "PRETRAIN_EPOCHS": 10, "SEED": 0}, spec=spec, stem="curves", top1=0.8)
    text = open(report.write_report(str(root), str(tmp_path / "out"), plots=False)).read()
    section = text.split("## Convergence")[1].split("\n## ")[0]
    assert "| METHOD | 10 | 20 | 40 | doublings (pp) | verdict |" in section
    assert "| supcon | 80.10 (n=2) | 85.10 (n=2) | 85.60 (n=2) | 10→20 +5.00, 20→40 +0.50 | **plateaued at 20** |" in section
    assert "| simclr | 70.10 (n=2) | 73.10 (n=2) | 76.10 (n=2) | 10→20 +3.00, 20→40 +3.00 | still rising (20→40: +3.00 pp) |" in section
    assert "| ce | 80.00 | – | – | – | no doubling in the grid: cannot judge |" in section
    claims = text.split("## Claims")[1].split("\n## ")[0]
    assert "**Convergence (PRETRAIN_EPOCHS, doubling moves < 1 pp):** ce: no doubling in the grid: cannot judge; " \
           "simclr: still rising (20→40: +3.00 pp); supcon: plateaued at 20 (Convergence below)." in claims
    assert text.index("## Convergence") < text.index("## Plots")


@pytest.mark.parametrize(
    "value, message",
    [
        ("PRETRAIN_EPOCH", "report.convergence names PRETRAIN_EPOCH, which no grid point sets (the grid's macros: METHOD, "
                   "PRETRAIN_EPOCHS); did you mean PRETRAIN_EPOCHS?"),
        ("METHOD", "report.convergence: METHOD must be a positive number (a training length) at every point; "
                   "got 'supcon'"),
        (["PRETRAIN_EPOCHS"], "report.convergence must be a string; got ['PRETRAIN_EPOCHS']"),
    ],
)
def test_bad_convergence_setting_is_one_line(value, message):
    points = [{"METHOD": "supcon", "PRETRAIN_EPOCHS": 25}, {"METHOD": "supcon", "PRETRAIN_EPOCHS": 50}]
    with pytest.raises(report_spec.SpecError) as err:
        report_spec.check({"convergence": value}, points)
    assert str(err.value) == message and err.value.key == "convergence"
