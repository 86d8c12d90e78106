"""Reading gin recipes as text: files, includes, overlays and --gin_param bindings (no TensorFlow).

A recipe is read with gin's own parser and a delegate that turns `@refs` and `%macros` into strings, so nothing
has to be registered and TensorFlow is never imported. Every binding is kept with the file and line it came
from and its origin (the recipe itself, an include, an overlay such as `recipes/smoke.gin`, or a --gin_param),
so that the checks in `supcon.experiment.grid` and `supcon.experiment.bindings` can name the file and the setting in one line.

Malformed files fail here, each with one line naming the file: a file that cannot be read or is not UTF-8
text, a recipe or include with no statement, an include that is missing or makes a cycle, a syntax error.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tokenize
from collections.abc import Sequence
from typing import Any

from gin import config_parser

RECIPES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "recipes")

# Where a binding comes from. Overlays (the runner's smoke.gin, a point's own bindings) are generic: they may
# bind macros that a given recipe does not have, so the unused-binding checks skip them.
RECIPE, INCLUDE, OVERLAY, PARAM = "recipe", "include", "overlay", "param"
GRID_ARGS = ("axes", "points", "runs_of", "reuse_from", "share_pretraining")  # the runner's grid.* bindings
STEM_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")  # a recipe stem, as grid.runs_of and grid.reuse_from name one


class GridError(ValueError):
    """A recipe, grid or selection error; the message is one line naming the file and the binding."""


class _Delegate(config_parser.ParserDelegate):
    """Returns '@name', '@name()' and '%name' strings for references and records macro uses."""

    def __init__(self, uses: set[str]):
        self._uses = uses

    def configurable_reference(self, scoped_configurable_name, evaluate):
        return "@" + scoped_configurable_name + ("()" if evaluate else "")

    def macro(self, macro_name):
        self._uses.add(macro_name)
        return "%" + macro_name


@dataclasses.dataclass(frozen=True)
class Binding:
    """One `[scope/]selector[.arg_name] = value` statement as read (a macro when arg_name is empty).

    Attributes:
      where: 'file:line', or "--gin_param 'B'" for a command-line binding.
      origin: RECIPE (the recipe file itself), INCLUDE, OVERLAY or PARAM.
      scope, selector, arg_name: gin's parts of the binding's key.
      value: the value, with references and macros as '@scope/name' / '%NAME' strings.
    """

    where: str
    origin: str
    scope: str
    selector: str
    arg_name: str
    value: Any

    @property
    def is_macro(self) -> bool:
        return not self.arg_name

    @property
    def text(self) -> str:
        """The binding's key as written, e.g. 'supcon/contrastive.temperature' or 'TEMPERATURE'."""
        key = f"{self.selector}.{self.arg_name}" if self.arg_name else self.selector
        return f"{self.scope}/{key}" if self.scope else key


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
      bindings: every binding statement in parse order (see `Binding`), grid and report ones included.
      runs_of: the `grid.runs_of` value: the stem of the recipe whose runs this one reads (None: its own).
      runs_of_path: that recipe's file (`resolve_runs_of`), '' without grid.runs_of.
      reuse_from: the `grid.reuse_from` value: stems of recipes whose finished runs of identical points the
        runner copies instead of training them (None: none); checked by `supcon.experiment.grid.resolve_reuse_from`.
      reuse_from_paths: those recipes' files, [] without grid.reuse_from.
      share_pretraining: `grid.share_pretraining`: points that differ only in their final stage start it from
        one another's pretraining (`supcon.experiment.sharing`).
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
    bindings: list[Binding] = dataclasses.field(default_factory=list)
    runs_of: Any = None
    runs_of_path: str = ""
    reuse_from: Any = None
    reuse_from_paths: list[str] = dataclasses.field(default_factory=list)
    share_pretraining: bool = False

    @property
    def runs_stem(self) -> str:
        """The stem the grid's points carry (their ids, run dirs and point.json): `grid.runs_of`, else `stem`."""
        return self.runs_of or self.stem

    @property
    def keys(self) -> list[str]:
        """The grid's macros: the points' keys (in order of appearance), then the axes' keys."""
        keys = {k: None for entry in self.points if isinstance(entry, dict) for k in entry}
        return list(keys) + [k for k in self.axes if k not in keys]


def display(path: str) -> str:
    """A path relative to the working directory when it is inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _where(location: config_parser.Location, default: str) -> str:
    return f"{display(location.filename or default)}:{location.line_num}"


def one_line(text: str) -> str:
    return " ".join(text.split())


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
        raise GridError(one_line(f"{where}: {msg}" + (f" in '{line}'" if line else ""))) from None
    except tokenize.TokenError as e:
        where = filename if filename.startswith("--") else f"{filename}:{e.args[1][0]}"
        raise GridError(f"{where}: {e.args[0]} (an unclosed bracket?)") from None
    except (ValueError, TypeError) as e:
        raise GridError(one_line(f"{filename}: {e}")) from None


def _resolve_include(name: str, including: str, recipes_dir: str) -> str:
    """Finds an included file: relative to the including file, recipes/, the repo, the cwd."""
    if os.path.isabs(name):
        return name if os.path.isfile(name) else ""
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


def read_text(path: str) -> str:
    """A gin file's text.

    Raises:
      GridError: the file cannot be read or is not UTF-8 text (naming the byte offset).
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if text.startswith("\ufeff"):  # gin's parser stops at it too
            raise GridError(f"{display(path)}:1: starts with a byte-order mark; save it as UTF-8 without BOM")
        return text
    except UnicodeDecodeError as e:
        line = e.object[: e.start].count(b"\n") + 1
        raise GridError(
            f"{display(path)}:{line}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            "save it as UTF-8"
        ) from None
    except OSError as e:
        raise GridError(f"{display(path)}: cannot read: {e.strerror or e}") from None


def _apply(recipe: Recipe, statements: list, source: str, origin: str, recipes_dir: str, stack: tuple,
           label: str = "") -> None:
    """Applies parsed statements to `recipe` in order, recursing into includes.

    `label` names the statements in messages instead of `source`:line (a --gin_param).
    """
    for st in statements:
        where = label or _where(st.location, source)
        if isinstance(st, config_parser.IncludeStatement):
            path = _resolve_include(st.filename, source, recipes_dir)
            if not path:
                raise GridError(f"{where}: include '{st.filename}' not found")
            if path in stack:
                chain = " -> ".join(display(p) for p in stack + (path,))
                raise GridError(f"{where}: include '{st.filename}' closes an include cycle: {chain}")
            _load_file(recipe, path, INCLUDE if origin == RECIPE else origin, recipes_dir, stack)
        elif isinstance(st, config_parser.BindingStatement):
            _apply_binding(recipe, st, where, origin)


def _apply_binding(recipe: Recipe, st: config_parser.BindingStatement, where: str, origin: str) -> None:
    recipe.bindings.append(Binding(where, origin, st.scope or "", st.selector, st.arg_name or "", st.value))
    if st.selector in ("grid", "report") and st.arg_name:
        if st.scope:
            raise GridError(f"{where}: {st.scope}/{st.selector}.{st.arg_name} must not be scoped")
        if st.selector == "grid":
            if st.arg_name not in GRID_ARGS:
                allowed = ", ".join(f"grid.{name}" for name in GRID_ARGS)
                raise GridError(f"{where}: unknown binding grid.{st.arg_name} (allowed: {allowed})")
            if st.arg_name == "share_pretraining" and not isinstance(st.value, bool):
                raise GridError(f"{where}: grid.share_pretraining must be True or False; got {st.value!r}")
            setattr(recipe, st.arg_name, st.value)
        else:
            recipe.report[st.arg_name] = st.value
        recipe.where[f"{st.selector}.{st.arg_name}"] = where
    elif not st.arg_name and not st.scope:
        recipe.macros[st.selector] = st.value


def _load_file(recipe: Recipe, path: str, origin: str, recipes_dir: str, stack: tuple) -> None:
    text = read_text(path)
    recipe.files.append(path)
    statements = parse_statements(text, display(path), recipe.macro_uses)
    if not statements and origin in (RECIPE, INCLUDE):
        what = "recipe" if origin == RECIPE else "included file"
        raise GridError(
            f"{display(path)}: the {what} is empty (no include and no binding)"
            + ("" if text.strip() else ": an unsaved or truncated file?")
        )
    if origin == RECIPE:
        recipe.header = _read_header(text)
    _apply(recipe, statements, path, origin, recipes_dir, stack + (path,))


def read_recipe(
    path: str,
    overlays: Sequence[str] = (),
    gin_params: Sequence[str] = (),
    recipes_dir: str = RECIPES_DIR,
) -> Recipe:
    """Reads a recipe, then overlay files and gin bindings (in that order), without checking its grid.

    Args:
      path: the recipe file.
      overlays: gin files applied after the recipe (e.g. `recipes/smoke.gin`, a point's bindings).
      gin_params: gin binding strings applied last (the runner's `--gin_param`s).
      recipes_dir: the folder searched for includes after the including file's folder.

    Raises:
      GridError: a file is missing, unreadable, not UTF-8, empty or malformed, or an include is missing or
        makes a cycle.
    """
    path = os.path.abspath(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    recipe = Recipe(path=path, stem=stem, axes={}, points=[])
    _load_file(recipe, path, RECIPE, recipes_dir, ())
    for overlay in overlays:
        _load_file(recipe, os.path.abspath(overlay), OVERLAY, recipes_dir, ())
    for param in gin_params:
        where = f"--gin_param {param!r}"
        statements = parse_statements(param, where, recipe.macro_uses)
        # An include in a --gin_param resolves from the working directory.
        _apply(recipe, statements, os.path.join(os.getcwd(), "--gin_param"), PARAM, recipes_dir, (), where)
    resolve_runs_of(recipe, recipes_dir)
    return recipe


def resolve_runs_of(recipe: Recipe, recipes_dir: str = RECIPES_DIR) -> None:
    """Checks `grid.runs_of = 'other'` and finds `other.gin` (in the recipe's folder, then `recipes_dir`).

    A recipe with `grid.runs_of` reads and scores the runs of another recipe instead of training its own copies:
    its points carry the other recipe's stem (ids, run dirs in `<runs_dir>/<other>/`);
    `supcon.experiment.grid.runs_of_points` checks that they are points of the other grid and that both recipes train
    alike. Naming the recipe itself is the same as not binding it.

    Raises:
      GridError: the value is not a recipe stem, or no such recipe file exists (one line naming grid.runs_of).
    """
    if recipe.runs_of is None:
        return
    where = recipe.where.get("grid.runs_of", display(recipe.path))
    stem = recipe.runs_of
    if not is_stem(stem):
        raise GridError(
            f"{where}: grid.runs_of must be the stem of another recipe, a string like 'fmnist_table2' (no folder, "
            f"no .gin); got {stem!r}"
        )
    recipe.runs_of_path = find_recipe(recipe, stem, recipes_dir, f"{where}: grid.runs_of = {stem!r}")


def is_stem(value: Any) -> bool:
    """Whether `value` names a recipe by its stem ('fmnist_table2': no folder, no .gin)."""
    return isinstance(value, str) and bool(STEM_RE.fullmatch(value)) and not value.endswith(".gin")


def find_recipe(recipe: Recipe, stem: str, recipes_dir: str, where: str) -> str:
    """The file of the recipe `stem` names: `stem.gin` in `recipe`'s folder, else in `recipes_dir`.

    Raises:
      GridError: there is no such file (`where: no recipe stem.gin in folder or folder`).
    """
    folders = list(dict.fromkeys([os.path.dirname(recipe.path), os.path.abspath(recipes_dir)]))
    for folder in folders:
        candidate = os.path.join(folder, f"{stem}.gin")
        if os.path.isfile(candidate):
            return candidate
    raise GridError(f"{where}: no recipe {stem}.gin in {' or '.join(display(f) for f in folders)}")


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
