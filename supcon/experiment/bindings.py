"""Bindings that nothing reads: a typo in a macro, a scope or an override is an error, with the nearest name.

Read from the recipe text (no TensorFlow), so the runner checks before anything starts and the trainer applies
the same checks to a run started by hand. What counts as read, and the three checks: docs/recipes.md.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Iterator, Sequence
from typing import Any

from supcon.experiment.recipe import (
    INCLUDE,
    OVERLAY,
    PARAM,
    RECIPE,
    Binding,
    GridError,
    Recipe,
    format_value,
)
from supcon.robust import spec as corruption_spec
from supcon.workdir import (  # noqa: F401  (re-exported: settings records are the run directory's)
    describe_differences,
    run_settings_mismatch,
    settings_differences,
    settings_hash,
)

# Macros the code reads by name (gin.query_parameter), with the reason.
RUNTIME_MACROS = {"METHOD": "supcon.main calls the root in the gin scope METHOD names"}
REQUIRED = "gin.REQUIRED"


def references(value: Any) -> Iterator[tuple[str, str]]:
    """('%', NAME) for each macro and ('@', 'scope/name') for each configurable reference in a value."""
    if isinstance(value, str):
        if value.startswith("%"):
            yield "%", value[1:]
        elif value.startswith("@"):
            yield "@", value[1:].removesuffix("()")
    elif isinstance(value, list | tuple):
        for item in value:
            yield from references(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from references(key)
            yield from references(item)


def scopes_of(reference: str) -> list[str]:
    """The scope components of 'a/b/name' (['a', 'b'])."""
    return reference.split("/")[:-1]


def nearest(name: str, candidates: Sequence[str]) -> str:
    """'; did you mean X?' for the closest candidate (difflib), else ''."""
    found = difflib.get_close_matches(name, sorted(set(candidates) - {name}), n=1, cutoff=0.6)
    return f"; did you mean {found[0]}?" if found else ""


def _live(scope: str, scopes: set[str]) -> bool:
    """Whether a binding in `scope` ('' or 'a/b') applies where the scopes `scopes` are entered."""
    return not scope or set(scope.split("/")) <= scopes


def _configurable(b: Binding) -> bool:
    """A binding of a configurable's parameter (not a macro, not the runner's grid.* / report.*)."""
    return bool(b.arg_name) and not (not b.scope and b.selector in ("grid", "report"))


def _uses(recipe: Recipe) -> set[str]:
    """Every macro referred to as %NAME anywhere (grid values included)."""
    return {name for b in recipe.bindings for kind, name in references(b.value) if kind == "%"}


def _method_values(recipe: Recipe, points: Sequence[dict]) -> set[str]:
    """Every value METHOD takes in any file or point: the scopes the trainer enters for the root."""
    values = {b.value for b in recipe.bindings if b.is_macro and b.selector == "METHOD"}
    values |= {p["METHOD"] for p in points if "METHOD" in p}
    return {v for v in values if isinstance(v, str)}


def _named_scopes(recipe: Recipe, points: Sequence[dict]) -> set[str]:
    """Scopes that something enters: those of every @reference anywhere, and every METHOD value."""
    scopes = {
        s for b in recipe.bindings for kind, ref in references(b.value) if kind == "@" for s in scopes_of(ref)
    }
    return scopes | _method_values(recipe, points)


def _check_references(recipe: Recipe) -> None:
    """A %NAME that no file, override or grid key binds."""
    bound = set(recipe.macros) | set(recipe.keys) | {REQUIRED}
    for b in recipe.bindings:
        for kind, name in references(b.value):
            if kind == "%" and name not in bound:
                raise GridError(
                    f"{b.where}: {b.text} refers to %{name}, which nothing binds ({name} = ...)"
                    + nearest(name, list(bound - {REQUIRED}))
                )


def _check_static(recipe: Recipe, points: Sequence[dict]) -> None:
    """Check 1: a macro no binding refers to, a scope nothing enters (overlays exempt)."""
    uses = _uses(recipe)
    read = uses | set(recipe.keys) | set(RUNTIME_MACROS)
    checked = [b for b in recipe.bindings if b.origin != OVERLAY]
    params_first = sorted(checked, key=lambda b: b.origin != PARAM)  # a typo is likeliest in an override
    for b in params_first:
        if b.is_macro and not b.scope and b.selector not in read:
            raise GridError(
                f"{b.where}: nothing reads the macro {b.selector} (no binding refers to %{b.selector})"
                + nearest(b.selector, list(read))
            )
    named = _named_scopes(recipe, points)
    for b in params_first:
        if not _configurable(b) or not b.scope:
            continue
        for scope in b.scope.split("/"):
            if scope not in named:
                raise GridError(
                    f"{b.where}: nothing enters the scope {scope}/ of {b.text} (no @{scope}/... reference "
                    f"and no METHOD = '{scope}')" + nearest(scope, list(named))
                )


def reach(recipe: Recipe, values: dict) -> tuple[set[str], set[str]]:
    """(live scopes, macros read) of one grid point with `values`; see the module docstring."""
    macros = {**recipe.macros, **values}
    method = macros.get("METHOD")
    scopes = {method} if isinstance(method, str) else set()
    read = set(RUNTIME_MACROS) | set(values)
    sources = [b for b in recipe.bindings if _configurable(b)]
    while True:
        size = (len(scopes), len(read))
        found = [r for b in sources if _live(b.scope, scopes) for r in references(b.value)]
        found += [r for name in list(read) for r in references(macros.get(name))]
        for kind, name in found:
            if kind == "%":
                read.add(name)
            else:
                scopes.update(scopes_of(name))
        if (len(scopes), len(read)) == size:
            return scopes, read


def _check_methods(recipe: Recipe, points: Sequence[dict]) -> None:
    """When the recipe binds the root per method (scoped bindings named by a METHOD value), every point's METHOD
    must name such a scope (supcon.main refuses one that does not; caught here, before the TF start)."""
    scoped = {part for b in recipe.bindings if _configurable(b) for part in b.scope.split("/") if part}
    if not scoped & _method_values(recipe, points):
        return  # METHOD is only a label here
    for values in points:
        method = {**recipe.macros, **values}.get("METHOD")
        if isinstance(method, str) and method not in scoped:
            if "METHOD" in values:  # from the grid
                where = recipe.where.get("grid.axes" if "METHOD" in recipe.axes else "grid.points", recipe.path)
            else:  # the last binding of METHOD
                where = [b.where for b in recipe.bindings if b.is_macro and b.selector == "METHOD"][-1]
            raise GridError(
                f"{where}: METHOD = {method!r} names no method: nothing is bound in the scope {method}/"
                + nearest(method, sorted(scoped & _method_values(recipe, points)))
            )


def _check_grid_reads(recipe: Recipe, points: Sequence[dict]) -> None:
    """Check 3: a binding of the recipe file or an override that no point of the grid reads."""
    reached = [reach(recipe, values) for values in points]
    live_scopes = [scopes for scopes, _ in reached]
    read = set(recipe.keys).union(*(r for _, r in reached))
    methods = sorted({str({**recipe.macros, **values}.get("METHOD")) for values in points})
    for b in recipe.bindings:
        if b.origin not in (RECIPE, PARAM):
            continue
        if b.is_macro and not b.scope and b.selector not in read:
            readers = sorted({
                r.text for r in recipe.bindings if ("%", b.selector) in set(references(r.value))
            })
            raise GridError(
                f"{b.where}: no point of the grid reads the macro {b.selector}: only "
                f"{', '.join(readers[:3])} refer to it, in scopes no point enters (the points' METHOD: "
                f"{', '.join(methods)})"
            )
        if _configurable(b) and b.scope and not any(_live(b.scope, s) for s in live_scopes):
            raise GridError(
                f"{b.where}: no point of the grid enters the scope {b.scope}/, so nothing reads {b.text} "
                f"(the points' METHOD: {', '.join(methods)})"
            )


def check_bindings(recipe: Recipe, points: Sequence[dict]) -> None:
    """Checks that every binding of a recipe is read by something (see the module docstring).

    Args:
      recipe: the recipe as read by `supcon.experiment.recipe.read_recipe` (overlays and --gin_params included).
      points: the values of every point of its grid (`supcon.experiment.grid.expand`), even those --only or --shard drop.

    Raises:
      GridError: one line naming the file and line (or the --gin_param) and the binding, with the nearest
        name that is read when there is one.
    """
    _check_references(recipe)
    _check_static(recipe, points)
    _check_methods(recipe, points)
    _check_grid_reads(recipe, points)


_UNKNOWN_CONFIGURABLE = re.compile(r"No configurable matching '([^']*)'")
_UNKNOWN_PARAMETER = re.compile(r"Configurable '([^']*)' doesn't have a parameter named '([^']*)'")


def _registered_hint(first_line: str) -> str:
    """The nearest registered configurable, or parameter of the named configurable, to gin's unknown name."""
    from gin import config

    if match := _UNKNOWN_CONFIGURABLE.search(first_line):
        names = [c.name for _, c in config._REGISTRY.items()]
        return nearest(match.group(1).rsplit("/", 1)[-1], names)
    if match := _UNKNOWN_PARAMETER.search(first_line):
        try:
            signature = inspect.signature(config._REGISTRY.get_match(match.group(1)).wrapped)
        except (KeyError, TypeError, ValueError):
            return ""
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return nearest(match.group(2), [n for n, p in signature.parameters.items() if p.kind in named])
    return ""


def with_registry_hint(error: ValueError) -> ValueError:
    """gin's error for an unknown configurable or parameter, with the nearest registered name (difflib).

    Needs the configurables registered (the trainer imports them); other errors come back unchanged.
    """
    first, sep, rest = str(error).partition("\n")
    hint = _registered_hint(first)
    return ValueError(first.rstrip(".") + hint + sep + rest) if hint else error



def is_runner_binding(b: Binding) -> bool:
    """grid.* and report.*: settings the runner and the reporter read, never the trainer."""
    return bool(b.arg_name) and not b.scope and b.selector in ("grid", "report")


def is_eval_only(b: Binding) -> bool:
    """An evaluation-only argument of the root (`supcon.robust.spec.EVAL_ONLY_ARGS`): what is scored, not
    what is trained."""
    return bool(b.arg_name) and corruption_spec.is_eval_only_binding(b.selector, b.arg_name)


def final_bindings(recipe: Recipe, bindings: Sequence[Binding] | None = None) -> dict[str, Binding]:
    """The binding that wins for each key ('scope/selector.arg_name' or 'MACRO'), in order of first appearance, of
    `bindings` in the order read (default: the recipe's)."""
    final: dict[str, Binding] = {}
    for b in recipe.bindings if bindings is None else bindings:
        final[b.text] = b  # a key keeps its first position and takes its last value
    return final


def value_text(value: Any) -> str:
    """A binding's value as gin text (references and macros unquoted): equal texts train alike (20 is not 20.0,
    a tuple is not a list)."""
    try:
        return format_value(value)
    except GridError:
        return repr(value)


def _point_order(recipe: Recipe, values: dict) -> list[Binding]:
    """A grid point's bindings in the order its trainer reads them: the recipe and its includes, the point's grid
    values (the runner's point.gin), then the overlays (smoke.gin) and the --gin_params."""
    files = [b for b in recipe.bindings if b.origin in (RECIPE, INCLUDE)]
    later = [b for b in recipe.bindings if b.origin not in (RECIPE, INCLUDE)]
    point = [Binding("the grid point", OVERLAY, "", key, "", value) for key, value in values.items()]
    return files + point + later


def training_settings(recipe: Recipe, values: dict | None = None, fixed: set[str] = frozenset()) -> dict[str, Binding]:
    """The final bindings that decide what trains: every key but grid.*, report.* and the evaluation-only arguments.

    Args:
      recipe: the recipe as read (overlays and --gin_params included).
      values: a grid point's values, or None for the recipe itself. Given, the point's configuration: its values
        are bound after the recipe's files (as the runner's point.gin), and only the keys the point may read are
        kept (`reach`: configurable bindings in scopes it enters, macros it reads; an over-approximation, so a
        cross-entropy point leaves out the pretraining settings but keeps every binding it reads).
      fixed: macros left out (those every compared point binds from the grid, for a whole-recipe comparison).

    Returns:
      {key ('scope/selector.arg_name' or 'MACRO'): its final binding}, in order of first appearance.
    """
    final = final_bindings(recipe, None if values is None else _point_order(recipe, values))
    scopes, read = reach(recipe, values) if values is not None else (None, None)

    def readable(b: Binding) -> bool:
        return scopes is None or (_live(b.scope, scopes) and (not b.is_macro or b.selector in read))

    return {
        key: b for key, b in final.items()
        if not (is_runner_binding(b) or is_eval_only(b) or (b.is_macro and b.selector in fixed)) and readable(b)
    }  # fmt: skip


def settings_text(settings: dict[str, Binding]) -> dict[str, str]:
    """{key: value as gin text} in the same order: equal texts train alike (20 is not 20.0)."""
    return {key: value_text(b.value) for key, b in settings.items()}


def training_difference(recipe: Recipe, other: Recipe, fixed: set[str]) -> tuple[str, Binding | None,
                                                                                   Binding | None] | None:
    """The first key whose final binding differs between two recipes in what decides training, or None.

    Compared (`training_settings`, as gin text): every binding but grid.*, report.* and the evaluation-only
    arguments, macros included, except the macros in `fixed` (those every compared point binds from the grid, so
    their defaults reach no point). A key bound in one recipe only is a difference.

    Returns:
      (key, the recipe's binding or None, the other's binding or None).
    """
    mine, theirs = training_settings(recipe, fixed=fixed), training_settings(other, fixed=fixed)
    found = settings_differences(settings_text(mine), settings_text(theirs))
    if not found:
        return None
    key = found[0][0]
    return key, mine.get(key), theirs.get(key)


def eval_only_overrides(recipe: Recipe, other: Recipe) -> list[str]:
    """Gin bindings that give `other` the evaluation-only settings of `recipe` where their final values differ
    (e.g. "train_and_evaluate.corruptions = 'all'"): what a trainer of `other`'s file needs to score what `recipe`
    asks. A setting `other` has and `recipe` leaves unset stays `other`'s."""
    theirs = {k: b for k, b in final_bindings(other).items() if is_eval_only(b)}
    return [
        f"{key} = {value_text(b.value)}" for key, b in final_bindings(recipe).items()
        if is_eval_only(b) and (key not in theirs or value_text(theirs[key].value) != value_text(b.value))
    ]  # fmt: skip
