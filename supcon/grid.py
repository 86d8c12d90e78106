"""Grids declared in gin recipes: reading, expansion, point ids and slugs (no TensorFlow).

A recipe declares its grid with two gin bindings keyed by UPPER_CASE macros::

    grid.axes = {'TEMPERATURE': [0.05, 0.1, 0.5], 'SEED': [0, 1, 2]}      # cartesian product
    grid.points = [{'METHOD': 'supcon', 'LOSS': '@supcon'},               # coupled settings
                   {'METHOD': 'ce', 'LOSS': @ce}]

The points are `points x axes` (either may be absent; neither gives one point with no bindings);
entries of `points` may bind different macros, and every grid macro must be bound or used somewhere
in the recipe (which catches typos). A point binds `MACRO = value`; a string value starting with '@'
or '%' is written unquoted, as a gin reference. The recipe is read textually with gin's own parser
and a delegate that turns `@refs` and `%macros` into strings, so nothing has to be registered and
TensorFlow is never imported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import tokenize
from collections.abc import Iterable, Sequence
from typing import Any

from gin import config_parser

KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
GRID_NAMES = ("axes", "points")
SEED = "SEED"
MAX_SLUG = 96
RECIPES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")


class GridError(ValueError):
    """A recipe, grid or selection error; the message names the file and the binding."""


class _Delegate(config_parser.ParserDelegate):
    """Returns '@name', '@name()' and '%name' strings for references and records macro uses."""

    def __init__(self, uses: set[str]):
        self._uses = uses

    def configurable_reference(self, scoped_configurable_name, evaluate):
        return "@" + scoped_configurable_name + ("()" if evaluate else "")

    def macro(self, macro_name):
        self._uses.add(macro_name)
        return "%" + macro_name


@dataclasses.dataclass
class Recipe:
    """What a recipe declares, after following its includes (later bindings win, as in gin).

    Attributes:
      path: the recipe file as given.
      stem: the file name without `.gin`; names the recipe's runs and reports.
      axes: MACRO -> list of values (cartesian product), in declaration order.
      points: list of {MACRO: value} dicts of coupled settings.
      report: the `report.*` bindings, without the `report.` prefix.
      header: the leading comment lines of the recipe, without the '#'.
      macros: every top-level `MACRO = value` binding (final values).
      macro_uses: the macro names referenced as `%NAME` anywhere.
      files: the recipe and every file it includes, in parse order.
      where: 'file:line' of each grid/report binding, for error messages.
    """

    path: str
    stem: str
    axes: dict[str, list] = dataclasses.field(default_factory=dict)
    points: list[dict] = dataclasses.field(default_factory=list)
    report: dict[str, Any] = dataclasses.field(default_factory=dict)
    header: list[str] = dataclasses.field(default_factory=list)
    macros: dict[str, Any] = dataclasses.field(default_factory=dict)
    macro_uses: set[str] = dataclasses.field(default_factory=set)
    files: list[str] = dataclasses.field(default_factory=list)
    where: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        """The grid's macros: the points' keys (in order of appearance), then the axes' keys."""
        keys = {k: None for entry in self.points if isinstance(entry, dict) for k in entry}
        return list(keys) + [k for k in self.axes if k not in keys]


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


def _display(path: str) -> str:
    """A path relative to the working directory when it is inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _where(location: config_parser.Location, default: str) -> str:
    return f"{_display(location.filename or default)}:{location.line_num}"


def parse_statements(text: str, filename: str, uses: set[str] | None = None) -> list:
    """Parses gin text into gin's statement tuples, without resolving anything.

    Raises:
      GridError: on a syntax error, naming the file and line.
    """
    uses = set() if uses is None else uses
    try:
        parser = config_parser.ConfigParser(text, _Delegate(uses))
        return list(parser)
    except SyntaxError as e:
        msg = e.msg
        bad = re.search(r"Failed to parse token '(.*)'", msg)
        if bad:
            msg = f"cannot parse the value {bad.group(1)} (strings need quotes, references start with @)"
        line = (e.text or "").strip()
        where = filename if filename.startswith("--") else f"{filename}:{e.lineno}"
        raise GridError(_one_line(f"{where}: {msg}" + (f" in '{line}'" if line else ""))) from None
    except tokenize.TokenError as e:
        where = filename if filename.startswith("--") else f"{filename}:{e.args[1][0]}"
        raise GridError(f"{where}: {e.args[0]} (an unclosed bracket?)") from None
    except (ValueError, TypeError) as e:
        raise GridError(_one_line(f"{filename}: {e}")) from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _resolve_include(name: str, including: str, recipes_dir: str) -> str:
    """Finds an included file: relative to the including file, recipes/, the repo, the cwd."""
    if os.path.isabs(name):
        return name
    bases = [os.path.dirname(including), recipes_dir, os.path.dirname(recipes_dir), os.getcwd()]
    for base in bases:
        candidate = os.path.join(base, name)
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return ""


def _read_header(text: str) -> list[str]:
    """The leading comment lines, without '#' and one following space."""
    header = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped and not header:
            continue
        if not stripped.startswith("#"):
            break
        header.append(re.sub(r"^# ?", "", stripped))
    return header


def _apply(recipe: Recipe, statements: list, source: str, recipes_dir: str, stack: tuple) -> None:
    """Applies parsed statements to `recipe` in order, recursing into includes."""
    for st in statements:
        if isinstance(st, config_parser.IncludeStatement):
            path = _resolve_include(st.filename, source, recipes_dir)
            if not path:
                raise GridError(f"{_where(st.location, source)}: include '{st.filename}' not found")
            _load_file(recipe, path, recipes_dir, stack)
        elif isinstance(st, config_parser.BindingStatement):
            _apply_binding(recipe, st, source)


def _apply_binding(recipe: Recipe, st: config_parser.BindingStatement, source: str) -> None:
    where = _where(st.location, source)
    if st.selector in ("grid", "report") and st.arg_name:
        if st.scope:
            raise GridError(f"{where}: {st.scope}/{st.selector}.{st.arg_name} must not be scoped")
        if st.selector == "grid":
            if st.arg_name not in GRID_NAMES:
                raise GridError(
                    f"{where}: unknown binding grid.{st.arg_name} (allowed: grid.axes, grid.points)"
                )
            setattr(recipe, st.arg_name, st.value)
        else:
            recipe.report[st.arg_name] = st.value
        recipe.where[f"{st.selector}.{st.arg_name}"] = where
    elif not st.arg_name and not st.scope:
        recipe.macros[st.selector] = st.value


def _load_file(recipe: Recipe, path: str, recipes_dir: str, stack: tuple) -> None:
    if path in stack:
        raise GridError(
            f"{_display(path)}: include cycle: {' -> '.join(map(_display, stack + (path,)))}"
        )
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise GridError(f"{_display(path)}: cannot read: {e.strerror}") from None
    recipe.files.append(path)
    statements = parse_statements(text, _display(path), recipe.macro_uses)
    _apply(recipe, statements, path, recipes_dir, stack + (path,))


def load_recipe(
    path: str,
    overlays: Sequence[str] = (),
    gin_params: Sequence[str] = (),
    recipes_dir: str = RECIPES_DIR,
) -> Recipe:
    """Reads a recipe, then overlay files and gin bindings (in that order), and checks its grid.

    Args:
      path: the recipe file.
      overlays: gin files applied after the recipe (e.g. `recipes/smoke.gin`).
      gin_params: gin binding strings applied last (the runner's `--gin_param`s).
      recipes_dir: the folder searched for includes after the including file's folder.

    Returns:
      The Recipe.

    Raises:
      GridError: a file is missing or malformed, or the grid is invalid (see `check_grid`).
    """
    path = os.path.abspath(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    recipe = Recipe(path=path, stem=stem, axes={}, points=[])
    _load_file(recipe, path, recipes_dir, ())
    with open(path) as f:
        recipe.header = _read_header(f.read())
    for overlay in overlays:
        _load_file(recipe, os.path.abspath(overlay), recipes_dir, ())
    for param in gin_params:
        statements = parse_statements(param, f"--gin_param {param!r}", recipe.macro_uses)
        _apply(recipe, statements, os.path.join(os.getcwd(), "--gin_param"), recipes_dir, ())
    check_grid(recipe)
    check_report(recipe)
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
    """Checks the recipe's `report.*` settings: known names, and claims its grid can test.

    Raises:
      GridError: naming the file, line and binding: an unknown `report.*` name, or a `report.claims` entry that
        is not in supcon/paper_claims.csv or whose rows match no point of the grid (see `supcon.claims`).
    """
    from supcon import claims, report_data

    for name in recipe.report:
        if name not in report_data.SPEC_KEYS:
            where = recipe.where.get(f"report.{name}", recipe.path)
            allowed = ", ".join(f"report.{k}" for k in report_data.SPEC_KEYS)
            raise GridError(f"{where}: unknown binding report.{name} (allowed: {allowed})")
    if "claims" in recipe.report:
        where = recipe.where.get("report.claims", recipe.path)
        points = [p.values for p in expand(recipe)]
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


def format_value(value: Any) -> str:
    """Formats a Python value as gin text; strings starting with '@' or '%' stay unquoted."""
    if isinstance(value, str):
        return value if value[:1] in ("@", "%") else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(format_value(v) for v in value)
        return "(" + inner + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{format_value(k)}: {format_value(v)}" for k, v in value.items()) + "}"
        )
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    raise GridError(f"cannot write {value!r} ({type(value).__name__}) as a gin value")


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


def make_slug(values: dict[str, Any], pid: str) -> str:
    """A readable, filesystem-safe name: `method-supcon_temperature-0.1_seed-0`.

    Keys keep their order in `values` (the grid's declaration order) except SEED, which goes last; a
    slug longer than MAX_SLUG characters is cut and ends with the point id.
    """
    keys = sorted(values, key=lambda k: k == SEED)
    slug = "_".join(f"{k.lower()}-{_slug_value(values[k])}" for k in keys) or "default"
    if len(slug) > MAX_SLUG:
        slug = slug[: MAX_SLUG - 9].rstrip("-_.") + "-" + pid
    return slug


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
            pid = point_id(recipe.stem, bindings)
            if pid in seen:
                where = recipe.where.get("grid.points") or recipe.where.get(
                    "grid.axes", recipe.path
                )
                raise GridError(
                    f"{where}: duplicate grid point {bindings} (points {seen[pid]} and {len(points)})"
                )
            seen[pid] = len(points)
            slug = make_slug(values, pid)
            points.append(Point(recipe.stem, len(points), values, bindings, pid, slug))
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
