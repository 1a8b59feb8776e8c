"""The torchmetrics/Lightning and DDP/FSDP examples of docs/integrations.md run."""

import subprocess
import sys

import pytest

from tests.integrations.docs_blocks import DOC, section_blocks


def test_lightning_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("lightning.pytorch", reason="the example needs lightning")
    monkeypatch.chdir(tmp_path)
    (block,) = section_blocks("torchmetrics and Lightning")
    namespace = {}
    exec(compile(block, str(DOC), "exec"), namespace)
    metrics = namespace["trainer"].callback_metrics
    for name in ("val/ece", "val/ece_before_ts", "val/ece_after_ts", "val/temperature"):
        assert name in metrics, name
    assert float(metrics["val/ece"]) == pytest.approx(float(metrics["val/ece_before_ts"]), abs=1e-6)
    assert namespace["callback"].scaler.temperature > 0
    assert "T = " in capsys.readouterr().out


@pytest.mark.slow
def test_ddp_and_fsdp_example_runs_as_a_script(tmp_path):
    (block,) = section_blocks("DDP and FSDP")
    script = tmp_path / "ddp_example.py"
    script.write_text(block)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ddp", "fsdp"], result.stdout
    assert all("'n': 200" in line for line in lines), result.stdout
