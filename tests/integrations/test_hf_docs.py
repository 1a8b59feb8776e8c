"""The Hugging Face section of docs/integrations.md runs; the module's doctests pass."""

import doctest

from tests.integrations import hf_helpers  # noqa: F401  (offline hub; skips without transformers)
from tests.integrations.docs_blocks import DOC, section_blocks


def test_hugging_face_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocks = section_blocks("Hugging Face")
    assert len(blocks) >= 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert namespace["trainer"].state.global_step == 2
    assert "tensor(" in capsys.readouterr().out


def test_module_doctests_pass():
    from crossent.integrations import hf

    result = doctest.testmod(hf)
    assert result.attempted >= 3 and result.failed == 0
