"""Grids declared in gin recipes: reading, expansion, point ids and slugs (no TensorFlow).

A recipe declares its grid with two gin bindings keyed by UPPER_CASE macros::

    grid.axes = {'TEMPERATURE': [0.05, 0.1, 0.5], 'SEED': [0, 1, 2]}      # cartesian product
    grid.points = [{'METHOD': 'supcon', 'LOSS': '@supcon'},               # coupled settings
                   {'METHOD': 'ce', 'LOSS': @ce}]

A third binding, `grid.runs_of = 'other'`, makes a recipe read (and score) the runs of another recipe instead
of training its own copies (`runs_of_points`): its points take the ids and run dirs of `other.gin`'s grid.
A fourth, `grid.reuse_from = ['other', ...]`, lets the runner copy finished runs of those recipes that trained
exactly a point's settings instead of training the point again (`resolve_reuse_from`, `supcon.experiment.reuse`).

The points are `points x axes` (either may be absent; neither gives one point with no bindings);
entries of `points` may bind different macros, and every grid macro must be bound or used somewhere
in the recipe (which catches typos). A point binds `MACRO = value`; a string value starting with '@'
or '%' is written unquoted, as a gin reference. The recipe is read as text by `supcon.experiment.recipe` (no
TensorFlow); `load_recipe` then checks the grid, the `report.*` settings (`supcon.report.spec`) and that
every binding is read by something (`supcon.experiment.bindings`), each error one line naming the file and setting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from gin import config_parser

from supcon.experiment.bindings import (
    RUNTIME_MACROS,
    _configurable,
    _live,
    check_bindings,
    is_runner_binding,
    reach,
    references,
    settings_text,
    training_difference,
    training_settings,
    value_text,
)
from supcon.experiment.recipe import (  # noqa: F401  (re-exported: the runner and the tests read recipes through grid)
    INCLUDE,
    RECIPE,
    RECIPES_DIR,
    Binding,
    GridError,
    Recipe,
    display,
    find_recipe,
    format_value,
    is_stem,
    parse_statements,
    read_recipe,
)
from supcon.report import claims
from supcon.report import spec as report_spec

KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
SEED = "SEED"
MAX_SLUG = 96


@dataclasses.dataclass(frozen=True)
class Point:
    """One grid point: its bindings, a stable id and a readable, filesystem-safe slug."""

    recipe_stem: str
    index: int
    values: dict[str, Any]
    bindings: dict[str, str]
    id: str
    slug: str

    def gin_text(self) -> str:
        """The point's bindings as gin lines (`MACRO = value`)."""
        return "".join(f"{k} = {v}\n" for k, v in self.bindings.items())


def load_recipe(
    path: str,
    overlays: Sequence[str] = (),
    gin_params: Sequence[str] = (),
    recipes_dir: str = RECIPES_DIR,
) -> Recipe:
    """Reads a recipe, then overlay files and gin bindings (in that order), and checks it.

    Args:
      path: the recipe file.
      overlays: gin files applied after the recipe (e.g. `recipes/smoke.gin`, a point's bindings).
      gin_params: gin binding strings applied last (the runner's `--gin_param`s).
      recipes_dir: the folder searched for includes after the including file's folder.

    Returns:
      The Recipe.

    Raises:
      GridError: a file is missing or malformed (`supcon.experiment.recipe`), the grid or the report settings are invalid
        (`check_grid`, `check_report`, `resolve_reuse_from`), or a binding is read by nothing (`supcon.experiment.bindings`).
    """
    recipe = read_recipe(path, overlays, gin_params, recipes_dir)
    resolve_reuse_from(recipe, recipes_dir)
    check_grid(recipe)
    check_report(recipe)
    check_bindings(recipe, [p.values for p in expand(recipe)])
    return recipe


def _check_key(key: Any, where: str, name: str) -> None:
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise GridError(f"{where}: {name} key {key!r} must be an UPPER_CASE macro name")


def check_grid(recipe: Recipe) -> None:
    """Checks `grid.axes` and `grid.points` of a recipe (duplicate points are found by `expand`).

    Points may bind different macros (e.g. cross-entropy points need no pretraining settings).

    Raises:
      GridError: naming the file, line and binding: axes not a dict, a key that is not UPPER_CASE,
        an axis that is not a non-empty list, points not a non-empty list of dicts, a key in both
        axes and points, or a key that the recipe neither binds nor uses (a typo).
    """
    where_axes = recipe.where.get("grid.axes", recipe.path)
    where_points = recipe.where.get("grid.points", recipe.path)
    _check_axes(recipe.axes, where_axes)
    _check_points(recipe.points, where_points, bool(recipe.where.get("grid.points")))
    in_points = {k for entry in recipe.points for k in entry}
    both = sorted(set(recipe.axes) & in_points)
    if both:
        raise GridError(f"{where_axes}: {', '.join(both)} is in both grid.axes and grid.points")
    for key in recipe.keys:
        if key not in recipe.macros and key not in recipe.macro_uses:
            where = where_points if key in in_points else where_axes
            raise GridError(
                f"{where}: grid key {key} is neither bound ({key} = ...) nor used (%{key}) in the "
                "recipe or its includes; a typo? (bind a default to use it as a label)"
            )


def check_report(recipe: Recipe) -> None:
    """Checks the recipe's `report.*` settings (`supcon.report.spec`) and the claims its grid can test.

    Raises:
      GridError: naming the file, line and binding: an unknown `report.*` name, a value of the wrong type, rows
        or columns that name no grid macro, a metric no run writes, a paper table, row or column that
        supcon/paper_numbers.csv lacks, or a `report.claims` entry that is not in supcon/paper_claims.csv or
        whose rows match no point of the grid (see `supcon.report.claims`).
    """
    points = list(shown_values(recipe, expand(recipe)).values())
    try:
        report_spec.check(recipe.report, points)
    except report_spec.SpecError as e:
        raise GridError(f"{recipe.where.get(f'report.{e.key}', recipe.path)}: {e}") from None
    except ValueError as e:  # supcon/paper_numbers.csv itself
        raise GridError(str(e)) from None
    if "claims" in recipe.report:
        where = recipe.where.get("report.claims", recipe.path)
        try:
            claims.check_recipe_claims(recipe.report["claims"], points, where)
        except claims.ClaimError as e:
            raise GridError(str(e)) from None


def _check_axes(axes: Any, where: str) -> None:
    if not isinstance(axes, dict):
        kind = type(axes).__name__
        raise GridError(f"{where}: grid.axes must be a dict {{MACRO: [values]}}, got {kind}")
    for key, values in axes.items():
        _check_key(key, where, "grid.axes")
        if not isinstance(values, list) or not values:
            raise GridError(f"{where}: grid.axes[{key!r}] must be a non-empty list, got {values!r}")


def _check_points(points: Any, where: str, declared: bool) -> None:
    if not isinstance(points, list) or (declared and not points):
        raise GridError(f"{where}: grid.points must be a non-empty list of dicts, got {points!r}")
    for i, entry in enumerate(points):
        if not isinstance(entry, dict):
            raise GridError(
                f"{where}: grid.points[{i}] must be a dict {{MACRO: value}}, got {entry!r}"
            )
        for key in entry:
            _check_key(key, where, f"grid.points[{i}]")


def point_id(recipe_stem: str, bindings: dict[str, str]) -> str:
    """8 hex digits from the recipe stem and the sorted gin bindings: stable across processes."""
    canonical = json.dumps({"recipe": recipe_stem, "bindings": bindings}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def _slug_value(value: Any) -> str:
    if isinstance(value, str):
        text = value.lstrip("@%")
    elif isinstance(value, list | tuple):
        text = "-".join(_slug_value(v) for v in value)
    else:
        text = format_value(value)
    text = re.sub(r"[^a-z0-9.+-]+", "-", text.lower()).strip(".").rstrip("-")
    if not re.match(r"-[0-9.]", text):
        text = text.lstrip("-")  # keep the sign of a negative number only
    return text or "none"


def _slug_text(values: dict[str, Any], keys: Sequence[str] | None = None) -> str:
    """`key-value` of the `keys` of `values` (default all), in their order in `values` but SEED last."""
    shown = sorted((k for k in values if keys is None or k in keys), key=lambda k: k == SEED)
    return "_".join(f"{k.lower()}-{_slug_value(values[k])}" for k in shown) or "default"


def make_slug(values: dict[str, Any], pid: str, keys: Sequence[str] | None = None) -> str:
    """A readable, filesystem-safe name: `method-supcon_temperature-0.1_seed-0`.

    Writes the `keys` of `values` (default: all) in their order in `values` (the grid's declaration order)
    except SEED, which goes last; a slug longer than MAX_SLUG characters is cut and ends with the point id.
    `expand` chooses the keys (`slug_keys`).
    """
    slug = _slug_text(values, keys)
    if len(slug) > MAX_SLUG:
        slug = slug[: MAX_SLUG - 9].rstrip("-_.") + "-" + pid
    return slug


def unread_keys(recipe: Recipe, values: dict[str, Any]) -> set[str]:
    """The grid keys a point sets that nothing it runs reads (e.g. a cross-entropy point's pretraining epochs).

    A key counts as unread when bindings refer to it (`%KEY`) but none in a scope the point enters
    (`supcon.experiment.bindings.reach`), directly or through the macros those read. A key nothing refers to is a label
    (the reporter reads it): it is read.
    """
    scopes, _ = reach(recipe, values)
    macros = {**recipe.macros, **values}
    todo = [
        name for b in recipe.bindings if _configurable(b) and _live(b.scope, scopes)
        for kind, name in references(b.value) if kind == "%"
    ]  # fmt: skip
    read = set(RUNTIME_MACROS)
    while todo:
        name = todo.pop()
        if name not in read:
            read.add(name)
            todo += [n for kind, n in references(macros.get(name)) if kind == "%"]
    return {k for k in values if k in recipe.macro_uses and k not in read}


def _determined(rows: list[dict[str, str]], keys: list[str], key: str) -> bool:
    """Whether `key`'s value (absent counts as a value) is the same in every two rows that agree on `keys`."""
    seen: dict[tuple, str | None] = {}
    for row in rows:
        group = tuple(row.get(k) for k in keys)
        if seen.setdefault(group, row.get(key)) != row.get(key):
            return False
    return True


def slug_keys(recipe: Recipe, points: Sequence[Point]) -> list[list[str]]:
    """The keys each point's slug writes.

    Every key a point sets but never reads (`unread_keys`) is left out. When some slug would still be longer
    than MAX_SLUG, the keys that tell no two points apart are left out of every slug: first those with one
    value over the grid, then each key the remaining ones determine (gin references first, then from the last
    declared; SEED stays), so the slugs keep every key that distinguishes points (e.g. `paper_table2`:
    `method-supcon_dataset-cifar10`, its batch, epochs, learning rates and whitening statistics follow from
    the two). A slug still too long is cut and ends with the point id (`make_slug`).
    """
    unread = [unread_keys(recipe, p.values) for p in points]  # once per point: reach() walks the recipe
    shown = [[k for k in p.values if k not in skip] for p, skip in zip(points, unread, strict=True)]
    if all(len(_slug_text(p.values, keys)) <= MAX_SLUG for p, keys in zip(points, shown, strict=True)):
        return shown
    rows = [{k: format_value(p.values[k]) for k in keys} for p, keys in zip(points, shown, strict=True)]
    order = list(dict.fromkeys(k for keys in shown for k in keys))
    kept = [k for k in order if not _determined(rows, [], k)]  # one value (or absent) everywhere: no help

    def is_reference(key: str) -> bool:
        return any(str(row.get(key, "")).startswith(("@", "%")) for row in rows)

    for key in sorted(reversed(kept), key=lambda k: not is_reference(k)):  # stable: latest declared first
        rest = [k for k in kept if k != key]
        if key != SEED and _determined(rows, rest, key):
            kept = rest
    return [[k for k in keys if k in kept] for keys in shown]


def expand(recipe: Recipe) -> list[Point]:
    """Expands `points x axes` into Points, in declaration order (the last axis varies fastest).

    Raises:
      GridError: two points have the same bindings.
    """
    combos = list(itertools.product(*recipe.axes.values())) if recipe.axes else [()]
    entries = recipe.points or [{}]
    points, seen = [], {}
    for entry in entries:
        for combo in combos:
            values = {**entry, **dict(zip(recipe.axes, combo, strict=True))}
            bindings = {k: format_value(v) for k, v in values.items()}
            pid = point_id(recipe.runs_stem, bindings)
            if pid in seen:
                where = recipe.where.get("grid.points") or recipe.where.get(
                    "grid.axes", recipe.path
                )
                raise GridError(
                    f"{where}: duplicate grid point {bindings} (points {seen[pid]} and {len(points)})"
                )
            seen[pid] = len(points)
            points.append(Point(recipe.runs_stem, len(points), values, bindings, pid, ""))
    keys = slug_keys(recipe, points)
    points = [dataclasses.replace(p, slug=make_slug(p.values, p.id, k)) for p, k in zip(points, keys, strict=True)]
    return _unique_slugs(points)


def _unique_slugs(points: list[Point]) -> list[Point]:
    """Appends the id to slugs that collide (different values that read the same)."""
    counts: dict[str, int] = {}
    for p in points:
        counts[p.slug.lower()] = counts.get(p.slug.lower(), 0) + 1
    return [
        dataclasses.replace(p, slug=f"{p.slug}-{p.id}") if counts[p.slug.lower()] > 1 else p
        for p in points
    ]


def is_runner_param(param: str) -> bool:
    """Whether a --gin_param binds only grid.* and report.* settings (the runner's and the reporter's, never the
    trainer's). A param that does not parse counts as the trainer's."""
    try:
        statements = parse_statements(param, f"--gin_param {param!r}")
    except GridError:
        return False
    return bool(statements) and all(
        isinstance(st, config_parser.BindingStatement)
        and is_runner_binding(Binding("", "", st.scope or "", st.selector, st.arg_name or "", st.value))
        for st in statements
    )


def load_runs_of(
    recipe: Recipe,
    overlays: Sequence[str] = (),
    gin_params: Sequence[str] = (),
    recipes_dir: str = RECIPES_DIR,
) -> Recipe | None:
    """The recipe whose runs `recipe` reads (`grid.runs_of`), loaded and checked like `recipe` with the same
    overlays and --gin_params but the grid.* and report.* ones (those are this recipe's); None without runs_of.

    Raises:
      GridError: the other recipe fails its own checks, or reads the runs of a third recipe.
    """
    if not recipe.runs_of_path or recipe.runs_of_path == recipe.path:
        return None
    params = [p for p in gin_params if not is_runner_param(p)]
    other = load_recipe(recipe.runs_of_path, overlays, params, recipes_dir)
    if other.runs_of_path and other.runs_of_path != other.path:
        raise GridError(
            f"{_runs_of_where(recipe)}: {os.path.basename(other.path)} itself reads the runs of "
            f"{other.runs_of!r} (grid.runs_of); name that recipe here"
        )
    return other


def _runs_of_where(recipe: Recipe) -> str:
    return f"{recipe.where.get('grid.runs_of', recipe.path)}: grid.runs_of = {recipe.runs_of!r}"


def runs_of_points(recipe: Recipe, other: Recipe) -> list[Point]:
    """The points of a recipe that reads the runs of `other` (`grid.runs_of`), with `other`'s slugs.

    Raises:
      GridError: one line naming grid.runs_of: a point that is not a point of `other`'s grid (same id), or a
        binding that makes the two train differently (`supcon.experiment.bindings.training_difference`: every binding but
        grid.*, report.* and the evaluation-only ones; header comments may differ too).
    """
    name = os.path.basename(other.path)
    theirs = {p.id: p for p in expand(other)}
    points = expand(recipe)
    for point in points:
        if point.id not in theirs:
            shown = "{" + ", ".join(f"{k}: {v}" for k, v in point.bindings.items()) + "}"
            raise GridError(f"{_runs_of_where(recipe)}: point {shown} is not in {name}'s grid")
    fixed = set.intersection(*(set(p.values) for p in points)) if points else set()
    found = training_difference(recipe, other, fixed)
    if found:
        key, mine, their = found

        def side(b, label: str) -> str:
            return f"{value_text(b.value)} ({label}, {b.where})" if b else f"not bound ({label})"

        raise GridError(
            f"{_runs_of_where(recipe)}: this recipe trains differently from {name}: {key} = "
            f"{side(mine, 'this recipe')} vs {side(their, name)}"
        )
    return [dataclasses.replace(p, slug=theirs[p.id].slug) for p in points]


def resolve_reuse_from(recipe: Recipe, recipes_dir: str = RECIPES_DIR) -> None:
    """Checks `grid.reuse_from = ['other', ...]` and sets `recipe.reuse_from_paths` to those recipes' files.

    The runner copies a finished run of one of those recipes (`<runs_dir>/<other>/`, else a finished run record
    beside its report, `<report_dir>/<other>/runs/`) whose recorded settings are exactly a point's, instead of
    training the point (`supcon.experiment.reuse`). A recipe that reads another's runs
    (`grid.runs_of`) trains nothing of its own: it must not bind grid.reuse_from, but may include a recipe that
    does (the other recipe's runner honours it, and so does this one's when it trains into the other's folder).

    Raises:
      GridError: one line naming the file:line of grid.reuse_from: not a list of recipe stems, a stem named twice,
        this recipe itself, no such recipe file, a recipe that itself reads another's runs, or grid.runs_of too.
    """
    value = recipe.reuse_from
    if value is None:
        return
    where = f"{recipe.where.get('grid.reuse_from', display(recipe.path))}: grid.reuse_from"
    if recipe.runs_of is not None and recipe.runs_of_path != recipe.path:
        if _bound_in_include(recipe, "reuse_from"):
            return  # the included recipe's own setting, read from the other recipe (`load_runs_of`)
        raise GridError(
            f"{where} goes without grid.runs_of: this recipe reads the runs of {recipe.runs_of!r} and trains none "
            f"of its own (bind grid.reuse_from in {recipe.runs_of}.gin)"
        )
    if not isinstance(value, list) or not all(is_stem(stem) for stem in value):
        raise GridError(
            f"{where} must be a list of recipe stems, e.g. ['fmnist_table2'] (no folder, no .gin); got {value!r}"
        )
    where = f"{where} = {value!r}"
    paths = []
    for stem in value:
        if stem == recipe.stem:
            raise GridError(f"{where} names this recipe; name the other recipes whose finished runs it may copy")
        if value.count(stem) > 1:
            raise GridError(f"{where} names {stem!r} twice")
        path = find_recipe(recipe, stem, recipes_dir, where)
        other = read_recipe(path, recipes_dir=recipes_dir)
        if other.runs_of is not None and other.runs_of_path != other.path:
            raise GridError(
                f"{where}: {stem}.gin reads the runs of {other.runs_of!r} (grid.runs_of) and has none of its own; "
                "name that recipe here"
            )
        paths.append(path)
    recipe.reuse_from_paths = paths


def _bound_in_include(recipe: Recipe, arg_name: str) -> bool:
    """Whether the final `grid.<arg_name>` binding comes from an included file (not the recipe, an overlay or a
    --gin_param)."""
    found = [b for b in recipe.bindings if b.selector == "grid" and b.arg_name == arg_name and not b.scope]
    return bool(found) and found[-1].origin == INCLUDE


def point_settings(recipe: Recipe, point: Point) -> dict[str, str]:
    """The settings a grid point trains with, {binding: gin text}: every final binding of its configuration (the
    recipe and its includes, the point's values, overlays and --gin_params, as its trainer reads them) that it may
    read, but grid.*, report.* and the evaluation-only ones (`supcon.experiment.bindings.training_settings`). `recipe` is the
    file its trainer reads: with grid.runs_of, the other recipe (`load_runs_of`). The runner records them in
    point.json; the runner and the reporter compare a run dir's record with them."""
    return settings_text(training_settings(recipe, point.values))


def shown_values(recipe: Recipe, points: Sequence[Point]) -> dict[str, dict]:
    """{point id: its values as reports and claims see them}: with the recipe's value of each macro that other
    points set and this one leaves at the recipe's binding, when the point trains with it (it is among the macros
    it reads, `supcon.experiment.bindings.reach`, as for its `point_settings`) or the macro only labels points
    (no binding reads it, as `PRETRAIN_OPTIMIZER = 'lars'` beside `PRETRAIN_OPTIMIZER_FN`); a macro the point does
    not read stays unset (a report shows '–'). `recipe`: the file that trains the points (with grid.runs_of, the
    other recipe). The recipe's value is what the recipe and its includes bind, not an overlay's or a --gin_param's:
    a trainer reads the recipe with its point's bindings as an overlay, which must not relabel the other points."""
    named = {k for p in points for k in p.values}
    bound = {b.selector: b.value for b in recipe.bindings
             if b.is_macro and not b.scope and b.origin in (RECIPE, INCLUDE)}
    shown = {}
    for point in points:
        missing = [k for k in sorted(named - set(point.values)) if k in bound]
        read = reach(recipe, point.values)[1] if any(k in recipe.macro_uses for k in missing) else set()
        kept = {k: bound[k] for k in missing if k in read or k not in recipe.macro_uses}
        shown[point.id] = {**kept, **point.values}
    return shown


def parse_shard(text: str) -> tuple[int, int]:
    """Parses `--shard I/N` (0 <= I < N).

    Raises:
      GridError: the text is not two integers `I/N` with 0 <= I < N.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise GridError(f"--shard {text!r} must be I/N with integers 0 <= I < N, e.g. 0/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise GridError(f"--shard {text}: need 0 <= I < N and N >= 1 (shards are numbered 0..N-1)")
    return index, count


def shard(points: Sequence[Point], index: int, count: int) -> list[Point]:
    """The index-th of `count` disjoint, covering slices, dealt by sorted point id; grid order kept."""
    chosen = {p.id for p in sorted(points, key=lambda p: p.id)[index::count]}
    return [p for p in points if p.id in chosen]


def _parse_value(text: str) -> Any:
    statements = parse_statements(f"X = {text}", "--only")
    return statements[0].value


def value_matches(value: Any, text: str) -> bool:
    """Whether `--only KEY=text` selects `value`: gin text, a bare string or an equal literal."""
    text = text.strip()
    if text in (format_value(value), str(value)):
        return True
    try:
        return _parse_value(text) == value
    except GridError:
        return False


def parse_only(texts: Iterable[str], keys: Sequence[str]) -> dict[str, list[str]]:
    """Parses `--only KEY=VALUE` flags into {KEY: [VALUE, ...]}.

    Raises:
      GridError: a flag without '=', or a KEY that is not one of the grid's `keys`.
    """
    only: dict[str, list[str]] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise GridError(f"--only {text!r} must be KEY=VALUE, e.g. SEED=0")
        if key not in keys:
            have = ", ".join(keys) or "none: the recipe declares no grid"
            raise GridError(f"--only {text}: the grid has no axis {key} (axes: {have})")
        only.setdefault(key, []).append(value)
    return only


def select(points: Sequence[Point], only: dict[str, list[str]]) -> list[Point]:
    """Keeps points whose value matches one of the texts for every `--only` key.

    A point that does not bind KEY (points may bind different macros) does not match.

    Raises:
      GridError: a VALUE matches no point (the message lists the values there are).
    """

    def matches(point: Point, key: str, text: str) -> bool:
        return key in point.values and value_matches(point.values[key], text)

    for key, texts in only.items():
        for text in texts:
            if not any(matches(p, key, text) for p in points):
                have = sorted({p.bindings[key] for p in points if key in p.bindings})
                raise GridError(
                    f"--only {key}={text} matches no point ({key} is one of {', '.join(have)})"
                )
    return [p for p in points if all(any(matches(p, k, t) for t in ts) for k, ts in only.items())]
