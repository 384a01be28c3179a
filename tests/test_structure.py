"""How the product is put together: rules a reviewer would otherwise check by reading."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

PRODUCT = Path(__file__).resolve().parents[1] / "bot"


def test_nothing_is_patched_into_another_object_after_it_was_built() -> None:
    """Every collaborator is given to a constructor (`build` in bot/app.py wires them all);
    no module assigns to an attribute of an object other than `self`."""
    found = []
    for path in sorted(PRODUCT.rglob("*.py")):
        if "sandbox" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                if isinstance(target, ast.Attribute) and not _is_self(target.value):
                    found.append(f"{path.relative_to(PRODUCT.parent)}:{node.lineno}")
    assert found == []


# Objects a library hands us to fill in, which is how their API is used: slack_sdk's retry
# state, and an HTTP response whose reader gets the query's deadline.
FILLED_IN = {"self", "cls", "state", "response"}


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in FILLED_IN


def test_the_product_installs_no_analysis_library_it_does_not_use() -> None:
    """The health judge is plain Python (bot/health/sequential.py): no scipy at run time."""
    project = tomllib.loads((PRODUCT.parent / "pyproject.toml").read_text(encoding="utf-8"))
    runtime = " ".join(project["project"]["dependencies"])
    assert "scipy" not in runtime
    for module in PRODUCT.rglob("*.py"):
        imports = [
            line for line in module.read_text(encoding="utf-8").splitlines() if "import" in line
        ]
        assert not [line for line in imports if "scipy" in line], module


TESTS = Path(__file__).resolve().parent


def test_no_test_module_is_imported_by_another_module_of_the_tests() -> None:
    """What several test modules share lives in tests/support/ (or a conftest.py): importing a
    test module would make pytest's collection of one depend on the other."""
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        package = path.relative_to(TESTS.parent).parent.parts
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for module in _imported(node, package):
                if _is_test_module(module):
                    found.append(f"{path.relative_to(TESTS.parent)}:{node.lineno} {module}")
    assert found == []


def _imported(node: ast.AST, package: tuple[str, ...]) -> list[str]:
    """Every module `node` may import, dotted: a `from X import name` may import X.name."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = list(package[: len(package) - node.level + 1]) if node.level else []
    base += node.module.split(".") if node.module else []
    return [".".join(base), *(".".join([*base, alias.name]) for alias in node.names)]


def _is_test_module(dotted: str) -> bool:
    """As pytest finds them by default: test_*.py and *_test.py."""
    name = dotted.rsplit(".", 1)[-1]
    return name.startswith("test_") or name.endswith("_test")
