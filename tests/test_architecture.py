"""The wings' import rules beyond what `lint-imports` checks (pyproject.toml): no project import inside a function."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "supcon").rglob("*.py"), ROOT / "runner.py"])


def _function_level_project_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every `import supcon...` / `from supcon... import` inside a function or method body."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if in_function and isinstance(child, ast.ImportFrom) and (child.module or "").split(".")[0] == "supcon":
                found.append((child.lineno, child.module))
            if in_function and isinstance(child, ast.Import):
                found.extend((child.lineno, a.name) for a in child.names if a.name.split(".")[0] == "supcon")
            visit(child, inside)

    visit(tree, False)
    return found


def test_the_check_finds_a_function_level_import():
    source = "import os\nfrom supcon import workdir\n\ndef f():\n    from supcon.experiment import grid\n    import supcon.report\n"
    assert _function_level_project_imports(ast.parse(source)) == [(5, "supcon.experiment"), (6, "supcon.report")]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_project_module_is_imported_inside_a_function(path):
    found = _function_level_project_imports(ast.parse(path.read_text(), str(path)))
    assert not found, f"{path.relative_to(ROOT)}: project imports inside functions at lines {found}"


def test_no_module_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"modules over 600 lines: {long}"
