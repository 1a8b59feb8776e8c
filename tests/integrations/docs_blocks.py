"""The Python code blocks of one section of docs/integrations.md (for the tests that run them)."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"


def section_blocks(title: str) -> list[str]:
    """The ```python blocks of the section ``## title``, in order."""
    text = DOC.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)
