"""Every crossent name the README and docs show can be imported where they show it.

The names are read from the text (``crossent.a.b`` anywhere) and from the ``import`` statements
of the Python code blocks, so a moved or renamed public name fails here.
"""

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FILE_NAMES = (".db", ".md", ".py", ".json", ".toml")  # crossent.db is a file, not a name


def _resolve(dotted: str) -> object:
    """Import the longest module prefix of ``dotted``, then get the remaining attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(dotted)


def _dotted_names() -> list[tuple[str, str]]:
    found = set()
    for doc in DOCS:
        for match in re.finditer(r"\bcrossent(?:\.[A-Za-z_]\w*)+", doc.read_text()):
            if not match.group(0).endswith(FILE_NAMES):
                found.add((doc.name, match.group(0)))
    return sorted(found)


def _imports() -> list[tuple[str, str]]:
    found = set()
    for doc in DOCS:
        for block in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S):
            for node in ast.walk(ast.parse(block)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crossent"):
                    found |= {(doc.name, f"{node.module}.{a.name}") for a in node.names}
                elif isinstance(node, ast.Import):
                    found |= {
                        (doc.name, a.name) for a in node.names if a.name.startswith("crossent")
                    }
    return sorted(found)


@pytest.mark.parametrize(("doc", "name"), _dotted_names() + _imports())
def test_every_documented_name_resolves(doc, name):
    assert _resolve(name) is not None, f"{doc} shows {name}"


def test_the_docs_show_names_to_check():
    assert len(_dotted_names()) > 40 and len(_imports()) > 10
