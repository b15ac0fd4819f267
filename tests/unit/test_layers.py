"""The one-way flow of docs/architecture.md: no module imports a package of a higher layer."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "posediff"
LAYERS = [  # lowest first; a module may import its own layer and those below
    {"skeletons", "io", "env", "structures", "viz"},
    {"diffusion"},
    {"data"},
    {"models"},
    {"evaluation"},
    {"registry", "recipes", "zoo"},
    {"tasks"},
    {"engine"},
    {"bench", "bench_lifting", "bench_topdown"},
    {"cli", "__main__"},
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def imported_tops(path: Path):
    """The top-level posediff packages ``path`` imports (relative imports resolved)."""
    here = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]  # ('posediff', 'models', ...)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(here[:len(here) - (node.level - 1)])
            parts = base + (node.module.split(".") if node.module else [])
            names = parts[1:2] or [a.name for a in node.names]
            yield from (n for n in names if n in LEVEL)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("posediff."):
            yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            yield from (a.name.split(".")[1] for a in node.names if a.name.startswith("posediff."))


def test_every_module_is_in_a_layer():
    tops = {p.relative_to(PACKAGE).with_suffix("").parts[0] for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert tops <= set(LEVEL), sorted(tops - set(LEVEL))


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        top = path.relative_to(PACKAGE).with_suffix("").parts[0]
        if top == "__init__":
            continue
        for target in imported_tops(path):
            if LEVEL.get(target, 0) > LEVEL[top]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports posediff.{target}")
    assert not wrong, wrong
