import importlib.util
import subprocess
import sys

FRAMEWORKS = {
    "lightning",
    "pytorch_lightning",
    "torchmetrics",
    "transformers",
    "accelerate",
    "tokenizers",
}


def test_importing_crossent_imports_no_framework():
    # the frameworks are installed (the test extras), so their absence below means something
    assert all(importlib.util.find_spec(name) for name in ("transformers", "lightning"))
    # a fresh interpreter: the test process itself may have imported them already
    code = (
        "import sys\n"
        "import crossent, crossent.calibration, crossent.integrations, crossent.nn\n"
        "from crossent.calibration import CalibrationMeter, TemperatureScaling\n"
        "from crossent.calibration import expected_calibration_error\n"
        "from crossent.cli import main\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(result.stdout.split())
    assert "crossent" in loaded and "torch" in loaded
    assert not loaded & FRAMEWORKS, sorted(loaded & FRAMEWORKS)
