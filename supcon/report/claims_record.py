"""`<report>/claims.json`: a report's claim verdicts as data, so that the scoreboard (`supcon.report.scoreboard`) can
be built from the report folders alone, without run directories or recipes.

The reporter writes it beside README.md from the same verdicts the Claims section prints (`claims_section.Tested`);
a report whose recipe names no claim has none. Format (keys sorted, no timestamps, so that the same report gives the
same bytes)::

    {"format": 1, "recipe": "fmnist_table2", "written_by": "reporter", "smoke": false,
     "scale": {"dataset": ["fashion_mnist"], "encoder": [...], "pretrain_epochs": ["50"], ...},
     "bar_checked": true,
     "verdicts": [{"claim": "table2_supcon_gt_ce", "where": "", "verdict": "reproduced", "reason": "",
                   "compared": "METHOD=supcon − METHOD=cross_entropy", "unit": "pp",
                   "statistic": 0.31, "low": 0.13, "high": 0.49, "p": 0.009, "test": "paired t (by SEED)",
                   "note": "", "n": "5 pairs", "groups": [{"label": "METHOD=supcon", "n": 5}, ...],
                   "below_bar": [{"row": "METHOD=simclr", "points_over_pixels": 0.74}]}, ...]}

`scale` is the header's scale table (`header.scale_values`: each env.json scale field -> its distinct values).
`statistic`, `low` and `high` are in `unit` (`unit_of`): percentage points for accuracies, Spearman's ρ for a rise
along an axis, ECE as a fraction, mCE and relative mCE x 100; null when the verdict has no statistic (too few runs).
A claim with a margin (kinds `equivalent`, `not_greater`) adds `margin` (as the claims file gives it, in `unit`) and
`low90`, `high90`: the 90% interval, whose upper end is the one-sided 95% upper bound (null without a statistic);
other entries have none of these keys. An entry whose compared finished runs did not all compute in one precision
adds `precisions`: per compared row, `{"row": ..., "runs": {"float32": 3, "mixed bfloat16": 2}}`. `groups` counts
the finished runs of each compared group that report the claim's metric. `below_bar` lists the compared rows under
the CPU-scale bar, null when the report has no bar (`bar_checked` false). `written_by` is `reporter`, or `parsed`
for a committed report whose record was read back from its README's Claims section once its run directories were
gone (`parsed_from` then names the file). No TensorFlow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from supcon import workdir
from supcon.report import claims
from supcon.report.claims_section import Mix, Tested
from supcon.report.tables import is_fraction

CLAIMS_JSON = "claims.json"
FORMAT = 1
REPORTER, PARSED = "reporter", "parsed"
PP, RHO, ECE, MCE = "pp", "rank correlation", "ECE", "mCE"
UNITS = (PP, RHO, ECE, MCE)  # the scoreboard's figure draws one panel per unit, in this order (others after)
VERDICTS = (claims.REPRODUCED, claims.CONTRADICTED, claims.INCONCLUSIVE)
VERDICT_KEYS = ("claim", "where", "verdict", "reason", "compared", "unit", "statistic", "low", "high", "p", "test",
                "note", "n", "groups", "below_bar")  # fmt: skip
MARGIN_KEYS = ("margin", "low90", "high90")  # only in the entries of claims with a margin
PRECISIONS = "precisions"  # only in the entries whose compared runs did not all compute in one precision


def unit_of(claim: claims.Claim) -> str:
    """The unit of a claim's statistic: `rank correlation` for a rise along an axis, `ECE`, `mCE` (robust/mce and
    robust/relative_mce, x 100), `pp` for an accuracy difference; otherwise the metric's name."""
    if claim.kind == "increasing":
        return RHO
    if claim.metric.endswith("ece"):
        return ECE
    if claim.metric.startswith("robust/"):
        return MCE
    return PP if is_fraction(claim.metric) else claim.metric


def _rounded(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def verdict_entry(
    verdict: claims.Verdict, below: Sequence[tuple[str, float]] | None, mix: Mix = ()
) -> dict:
    """One verdict as a claims.json entry; `below`: its compared rows under the bar, None without a bar; `mix`: its
    rows' precisions when its runs did not all compute in one (`claims_section.precision_mix`)."""
    est = verdict.estimate
    unit = unit_of(verdict.claim)
    scale = 100.0 if unit == PP else 1.0
    margin = {}
    if verdict.claim.kind in claims.MARGIN_KINDS:
        inner = [scale * x for x in est.ci90] if est is not None and est.ci90 else [None, None]
        margin = {"margin": verdict.claim.margin, "low90": _rounded(inner[0]), "high90": _rounded(inner[1])}
    if mix:
        margin[PRECISIONS] = [{"row": row, "runs": dict(counts)} for row, counts in mix]
    return margin | {
        "claim": verdict.claim.id,
        "where": verdict.where,
        "verdict": verdict.verdict,
        "reason": verdict.reason,
        "compared": verdict.compared,
        "unit": unit,
        "statistic": None if est is None else _rounded(scale * est.value),
        "low": None if est is None else _rounded(scale * est.low),
        "high": None if est is None else _rounded(scale * est.high),
        "p": None if est is None else float(f"{est.p:.4g}"),
        "test": "" if est is None else est.test,
        "note": "" if est is None else est.note,
        "n": "" if est is None else est.n,
        "groups": [
            {"label": label, "n": len(claims.finished(members, verdict.claim.metric))}
            for label, members in verdict.groups
        ],
        "below_bar": None if below is None else [
            {"row": row, "points_over_pixels": _rounded(points, 4)} for row, points in below
        ],
    }  # fmt: skip


def report_record(recipe: str, tested: Tested, scale: dict[str, list[str]], smoke: bool,
                  supersedes: Sequence[str] = ()) -> dict:
    """The claims.json of a report: its recipe stem, the header's scale values, whether its runs are smoke runs,
    one entry per verdict of the Claims section, and (only when the recipe names some) the reports whose verdicts
    on the same claims it supersedes (`report.supersedes`)."""
    below = tested.below if tested.below is not None else [None] * len(tested.verdicts)
    extra = {"supersedes": list(supersedes)} if supersedes else {}
    return extra | {
        "format": FORMAT,
        "recipe": recipe,
        "written_by": REPORTER,
        "smoke": bool(smoke),
        "scale": {k: list(v) for k, v in scale.items()},
        "bar_checked": tested.below is not None,
        "verdicts": [verdict_entry(v, b, m) for v, b, m in zip(tested.verdicts, below, tested.mixes, strict=True)],
    }


def dumps(record: dict) -> str:
    """The file's text: indented JSON with sorted keys and a final newline (deterministic)."""
    return json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_record(folder: str, record: dict | None) -> None:
    """Writes `folder/claims.json` atomically, or removes a stale one when the report tests no claim (None)."""
    path = os.path.join(folder, CLAIMS_JSON)
    if record is None:
        if os.path.exists(path):
            os.remove(path)
        return
    check_record(record, path)
    workdir.write_text_atomic(path, dumps(record))


def _number_or_none(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _precisions_shape(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(row, dict) and isinstance(row.get("row"), str) and isinstance(row.get("runs"), dict)
        and all(isinstance(k, str) and isinstance(n, int) for k, n in row["runs"].items())
        for row in value
    )  # fmt: skip


def check_record(record: object, where: str) -> dict:
    """Returns `record` if it has the claims.json shape.

    Raises:
      ValueError: one line naming `where` and the first problem.
    """
    if not isinstance(record, dict):
        raise ValueError(f"{where}: not a JSON object")
    if record.get("format") != FORMAT:
        raise ValueError(f"{where}: format {record.get('format')!r}, expected {FORMAT}")
    if record.get("written_by") not in (REPORTER, PARSED):
        raise ValueError(f"{where}: written_by must be {REPORTER} or {PARSED}")
    if not isinstance(record.get("recipe"), str) or not isinstance(record.get("scale"), dict):
        raise ValueError(f"{where}: needs a recipe (string) and a scale (object)")
    if not isinstance(record.get("verdicts"), list):
        raise ValueError(f"{where}: verdicts must be a list")
    supersedes = record.get("supersedes", [])
    if not isinstance(supersedes, list) or not all(isinstance(name, str) for name in supersedes):
        raise ValueError(f"{where}: supersedes must be a list of report names")
    for i, entry in enumerate(record["verdicts"]):
        if not isinstance(entry, dict) or set(VERDICT_KEYS) - set(entry):
            missing = sorted(set(VERDICT_KEYS) - set(entry)) if isinstance(entry, dict) else "an object"
            raise ValueError(f"{where}: verdict {i} needs {missing}")
        if entry["verdict"] not in VERDICTS:
            raise ValueError(f"{where}: verdict {i}: {entry['verdict']!r} is not one of {', '.join(VERDICTS)}")
        if not all(_number_or_none(entry[k]) for k in ("statistic", "low", "high", "p")):
            raise ValueError(f"{where}: verdict {i}: statistic, low, high and p must be numbers or null")
        if not all(_number_or_none(entry.get(k)) for k in MARGIN_KEYS):
            raise ValueError(f"{where}: verdict {i}: {', '.join(MARGIN_KEYS)} must be numbers or null")
        if PRECISIONS in entry and not _precisions_shape(entry[PRECISIONS]):
            shape = "{row, runs: {precision: count}}"
            raise ValueError(f"{where}: verdict {i}: {PRECISIONS} must be a list of {shape}")
    return record


def read_record(folder: str) -> dict | None:
    """The claims.json of a report folder, None when it has none.

    Raises:
      ValueError: unreadable or malformed (one line naming the file).
    """
    path = os.path.join(folder, CLAIMS_JSON)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    return check_record(record, path)
