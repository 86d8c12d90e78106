"""The Claims section of a report: one summary line, then each claim's statistic, test, n, p and verdict.

The claims and their statistics are `supcon.report.claims`; this module only writes them as markdown, with each
verdict's rows that fall below the CPU-scale bar when pixel baselines were computed (`report_baselines`). No
TensorFlow.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

from supcon.report import claims
from supcon.report.baselines_section import BAR_PP, METRIC, below_bar
from supcon.report.data import MISSING, Run
from supcon.report.tables import format_paper, is_fraction, markdown_table

CLAIMS_LEGEND = (
    "Ours is the statistic with its 95% confidence interval. For a claim that row A is above (or below) row "
    "B: the difference of means A − B, paired t over seeds when both rows finished the same SEED values, else "
    "Welch's t (lowest / highest: against the other value of the axis with the lowest / highest mean). For a "
    "rise along a swept value: Spearman's ρ over all finished runs with Fisher's z interval (along SEVERITY, "
    "the corruption severity, each run counts once per severity, 0 = clean). For a lower spread: the "
    "Brown-Forsythe test on the per-setting means, as the difference of mean absolute deviations from the "
    "median (the sample standard deviations beside it). p is two-sided. **reproduced**: the interval excludes "
    "0 on the paper's side; **contradicted**: it excludes 0 on the other side; inconclusive: otherwise, or too "
    "few runs. One test per claim and setting, without correction for multiple comparisons. Accuracy "
    "differences are in percentage points (pp); ECE is a fraction; mCE and relative mCE are x 100 (the "
    "baseline scores 100). Claims: supcon/paper_claims.csv; statistics: scipy.stats."
)

MARGIN_LEGEND = (
    "With a margin (in the claim's unit, named in the test column): for a claim that rows A and B are equivalent, "
    "A − B with its 95% interval and, after it, its 90% interval; p is the two one-sided tests' (TOST, statsmodels' "
    "ttost_paired by SEED, else ttost_ind with unequal variances); **reproduced** when p < 0.05, i.e. the 90% "
    "interval lies inside ±margin; **contradicted** when the 95% interval lies entirely outside it. For a claim "
    "that A is not above B by more than the margin (non-superiority): p is the one-sided t test of A − B ≥ +margin; "
    "**reproduced** when the one-sided 95% upper bound (the 90% interval's upper end) is below +margin; "
    "**contradicted** when it is not and the 95% interval lies above 0. Inconclusive otherwise."
)

BAR_LEGEND = (
    f"In the verdict column, *below the bar* names a compared row whose mean {METRIC} over finished runs is less than {BAR_PP:g} "
    "points above raw-pixel logistic regression (the CPU-scale bar), with its points above pixels (for a rise "
    "along a swept value only its highest finished value is judged, short training being low by design; along "
    "SEVERITY the clean runs): such a verdict measures the training budget, not the method."
)
PRECISION_LEGEND = (
    "*precisions differ* names, for a verdict whose finished runs did not all compute in one precision (env.json "
    "`mixed_precision`: 'auto' picks mixed bfloat16 on CPUs with bfloat16 instructions, float32 elsewhere), how many "
    "of each compared row's runs did which: the two round differently, so part of such a difference may be the "
    "precision's; the same comparison within one precision is the one to trust."
)
Below = Sequence[tuple[str, float]]  # (row, points above pixel logistic regression)
Mix = Sequence[tuple[str, dict[str, int]]]  # (row, {precision: finished runs}) when a verdict's runs mix precisions


def precision_mix(verdict: claims.Verdict) -> list[tuple[str, dict[str, int]]]:
    """Each compared row with how many of its finished runs (those reporting the claim's metric) computed in which
    precision (`Run.precision`), in the verdict's order, when those runs did not all compute in one precision;
    [] when they did, or when a run's precision was not recorded."""
    rows = []
    for label, members in verdict.groups:
        precisions = [run.precision for run, _ in claims.finished(members, verdict.claim.metric)]
        if None in precisions:
            return []
        rows.append((label, dict(sorted(Counter(precisions).items()))))
    kinds = {precision for _, counts in rows for precision in counts}
    return rows if len(kinds) > 1 else []


def mix_text(mix: Mix) -> str:
    """'; precisions differ: METHOD=a: 5 float32; METHOD=b: 3 mixed bfloat16, 2 float32', or '' for no mix."""
    if not mix:
        return ""
    rows = [f"{row}: " + ", ".join(f"{n} {precision}" for precision, n in counts.items()) for row, counts in mix]
    return "; precisions differ: " + "; ".join(rows)


@dataclasses.dataclass(frozen=True)
class Tested:
    """The verdicts a report prints, and for each the compared rows below the CPU-scale bar (`below` is None when
    the report has no bar: no single data setting with pixel baselines), and each verdict's `precision_mix`. The
    Claims section and the report's claims.json (`supcon.report.claims_record`) are both written from it."""

    verdicts: list[claims.Verdict]
    below: list[Below] | None
    mixes: list[Mix]  # per verdict, `precision_mix`; empty when the runs compared all agree


def tested_claims(
    runs: list[Run], spec: dict, within: list[str], pixel_top1: float | None = None
) -> Tested | None:
    """The verdicts of the claims `spec['claims']` names (None when it names none), each with its rows below the
    CPU-scale bar when `pixel_top1` is given (see `claims_section`)."""
    if not spec.get("claims"):
        return None
    verdicts = claims.evaluate_claims(spec["claims"], runs, within)
    below = None if pixel_top1 is None else [below_bar(v, pixel_top1) for v in verdicts]
    return Tested(verdicts, below, [precision_mix(v) for v in verdicts])


def format_p(p: float | None) -> str:
    """A p value: three decimals, or scientific below 0.001."""
    if p is None:
        return MISSING
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def paper_cell(claim: claims.Claim) -> str:
    """The paper's numbers for a claim and where they come from, as the Claims section shows them."""
    numbers = ""
    if claim.paper_a is not None and claim.paper_b is not None:
        numbers = f"{format_paper(claim.paper_a)} vs {format_paper(claim.paper_b)}"
    elif claim.paper_values:
        numbers = claim.paper_values
    if numbers and claim.paper_setting:
        return f"{numbers} — {claim.paper_setting}"
    return numbers or claim.paper_setting or MISSING


def format_estimate(verdict: claims.Verdict) -> str:
    """`METHOD=supcon − METHOD=cross_entropy: +1.20 pp [+0.40, +2.00]`, or `ρ = +0.83 [+0.41, +0.96]`; a margin
    test adds its 90% interval: `A − B: +0.10 pp [-0.30, +0.50]; 90% [-0.21, +0.41]`."""
    est = verdict.estimate
    if est is None:
        return MISSING
    if verdict.claim.kind == "increasing":
        return f"ρ = {est.value:+.2f} [{est.low:+.2f}, {est.high:+.2f}]"
    fraction = is_fraction(verdict.claim.metric)
    unit = " pp" if fraction else ""
    ece = verdict.claim.metric.endswith("ece")  # a fraction shown as one, as the paper prints it

    def num(x: float, sign: str = "+") -> str:
        if ece:
            return f"{x:{sign}.4f}"
        return f"{100 * x:{sign}.2f}" if fraction else f"{x:{sign}.4g}"

    text = f"{num(est.value)}{unit} [{num(est.low)}, {num(est.high)}]"
    if est.ci90:
        text += f"; 90% [{num(est.ci90[0])}, {num(est.ci90[1])}]"
    if est.spreads:
        text += f" (std {num(est.spreads[0], '')} vs {num(est.spreads[1], '')}{unit})"
    return f"{verdict.compared}: {text}" if verdict.compared else text


def _verdict_cell(verdict: claims.Verdict, below: Below = (), mix: Mix = ()) -> str:
    if verdict.verdict == claims.INCONCLUSIVE:
        cell = f"inconclusive: {verdict.reason}" if verdict.reason else "inconclusive"
    else:
        cell = f"**{verdict.verdict}**"
    if below:
        cell += "; below the bar: " + ", ".join(f"{row} ({over:+.2f} over pixels)" for row, over in below)
    return cell + mix_text(mix)


def bar_summary(below: list[Below]) -> str:
    """'1 of 3 rests on rows below the CPU-scale bar (...): it measures ...', or '' when none does."""
    count = sum(bool(b) for b in below)
    if not count:
        return ""
    rests, it = ("rests", "it measures") if count == 1 else ("rest", "they measure")
    return (
        f"{count} of {len(below)} {rests} on rows below the CPU-scale bar (raw-pixel logistic regression + "
        f"{BAR_PP:g} points): {it} the training budget, not the method."
    )


def claims_rows(verdicts: list[claims.Verdict], below: list[Below] | None, mixes: Sequence[Mix]) -> list[list[str]]:
    """The table's cells, one row per verdict; `below[i]`: the rows verdict i rests on that are below the bar;
    `mixes[i]`: its rows' precisions when they differ (`precision_mix`)."""
    rows = []
    for v, under, mix in zip(verdicts, below or [()] * len(verdicts), mixes, strict=True):
        est = v.estimate
        claim = f"{v.claim.statement} (`{v.claim.id}`)" + (f"; {v.where}" if v.where else "")
        test = MISSING if est is None else est.test + (f" ({est.note})" if est.note else "")
        rows.append(
            [
                claim,
                v.claim.source,
                paper_cell(v.claim),
                format_estimate(v),
                test,
                MISSING if est is None else est.n,
                format_p(None if est is None else est.p),
                _verdict_cell(v, under, mix),
            ]
        )
    return rows


def claims_section(
    runs: list[Run],
    spec: dict,
    within: list[str],
    extra: list[str] = (),
    real_data: bool = False,
    pixel_top1: float | None = None,
    tested: Tested | None = None,
) -> list[str]:
    """`## Claims`: the summary line, the verdicts table and the legend; when no claim is named, a line saying so
    with `extra` (empty when there is neither).

    Args:
      runs: every run (unfinished ones count as planned).
      spec: the report spec; `spec['claims']` are the claim ids.
      within: the report's row and column macros: a claim is tested within each setting of those it does not
        name, so that it never pools different datasets or architectures.
      extra: lines to add under the summary (e.g. the comparison with raw pixels).
      real_data: the report compares its runs with raw-pixel baselines (a real dataset).
      pixel_top1: raw-pixel logistic regression's top-1 on the runs' one data setting, or None: each verdict
        then names the rows it compares that are below the CPU-scale bar (`report_baselines.below_bar`).
      tested: the verdicts as `tested_claims(runs, spec, within, pixel_top1)` gives them, when the caller has them
        already (the reporter writes the same ones to claims.json); computed here otherwise.
    """
    if not spec.get("claims"):
        if not (extra or real_data):
            return []
        # A report on real data says so too when it tests none of the paper's claims, beside the pixel comparison.
        lines = ["## Claims", "", "**No claim of the paper is tested by this grid** (`report.claims` names none).", ""]
        return lines + ([*extra, ""] if extra else ["Each row against raw pixels: Raw-pixel baselines below.", ""])
    tested = tested or tested_claims(runs, spec, within, pixel_top1)
    verdicts, below = tested.verdicts, tested.below
    summary = " ".join(filter(None, [claims.summary(verdicts), bar_summary(below or [])]))
    header = ["claim", "source", "paper", "ours (95% CI)", "test", "n", "p", "verdict"]
    lines = ["## Claims", "", f"**{summary}**", ""]
    lines += list(extra) + ([""] if extra else [])
    margins = any(v.claim.kind in claims.MARGIN_KINDS for v in verdicts)
    mixed = any(tested.mixes)
    legends = [CLAIMS_LEGEND] + [MARGIN_LEGEND] * margins + ([] if below is None else [BAR_LEGEND])
    legend = " ".join(legends + [PRECISION_LEGEND] * mixed)
    return lines + [markdown_table(header, claims_rows(verdicts, below, tested.mixes)), "", legend, ""]
