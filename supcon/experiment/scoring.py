"""Which corrupted test sets a grid point asks to score, read from its recipe's text (no TensorFlow).

The runner compares this with a finished point's result.json to score it again in eval mode, with no training
(`supcon.robust.spec` names the sets and their result keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from supcon.experiment.bindings import reach
from supcon.robust import spec


def _resolve(value: Any, macros: Mapping[str, Any], depth: int = 0) -> Any:
    """A binding's value with %MACRO references replaced by the macros' values (lists and tuples too)."""
    if depth > 20:
        raise ValueError("macro references nest too deep (a cycle?)")
    if isinstance(value, str) and value.startswith("%"):
        if value[1:] not in macros:
            raise ValueError(f"{value} is not bound")
        return _resolve(macros[value[1:]], macros, depth + 1)
    if isinstance(value, list | tuple):
        return type(value)(_resolve(v, macros, depth + 1) for v in value)
    return value


def _root_argument(recipe, values: Mapping[str, Any], arg: str, scopes: set[str]):
    """(found, value) of the binding of `train_and_evaluate.<arg>` gin applies in a point's live scopes: the
    most specific scope wins, then the last binding (as gin)."""
    best, rank = None, None
    for order, b in enumerate(recipe.bindings):
        if b.arg_name != arg or b.selector.rsplit(".", 1)[-1] != spec.ROOT:
            continue
        parts = set(b.scope.split("/")) - {""}
        if parts <= scopes:
            if rank is None or (len(parts), order) >= rank:
                best, rank = b, (len(parts), order)
    if best is None:
        return False, None
    return True, _resolve(best.value, {**recipe.macros, **values})


def requested(recipe, values: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(names, severities) a grid point asks to score, read from the recipe's text (`supcon.experiment.recipe.Recipe`,
    its overlays and --gin_params included) with the point's grid values; ((), ()) when it asks none.

    Raises:
      ValueError: the setting is not one `selection` accepts (one line naming the binding).
    """
    scopes, _ = reach(recipe, dict(values))
    method = {**recipe.macros, **values}.get("METHOD")
    scopes = set(scopes) | ({method} if isinstance(method, str) else set())
    found, corruptions = _root_argument(recipe, values, "corruptions", scopes)
    if not found:
        return (), ()
    has_severities, severities = _root_argument(recipe, values, "corruption_severities", scopes)
    return spec.selection(corruptions, severities if has_severities else spec.SEVERITIES)
