"""The README's and the docs' code runs as written: every ```python block, each in a fresh namespace, from the
repository root (a block fenced ```python no-run is shown, not run)."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(page, i, block) for page in PAGES
          for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))]


def test_readme_has_a_python_example():
    assert any(page == README for page, _, _ in BLOCKS)


@pytest.mark.parametrize("page, index, block", BLOCKS,
                         ids=[f"{p.relative_to(ROOT)}[{i}]" for p, i, _ in BLOCKS])
def test_python_blocks_run(page, index, block, monkeypatch):
    monkeypatch.chdir(ROOT)
    exec(compile(block, f"{page}[{index}]", "exec"), {"__name__": "__doc_example__"})


def test_readme_quick_start_commands_are_the_ci_ones():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    for cmd in ('pip install -e ".[dev]"', "pytest"):
        assert f"\n{cmd}\n" in text
        assert cmd in ci
    assert os.path.isfile(ROOT / ".ci" / "run")
