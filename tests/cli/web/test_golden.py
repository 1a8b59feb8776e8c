"""The golden file is crossent's numbers today, and the page's JavaScript reproduces it."""

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.web import golden

HERE = Path(__file__).parent
RTOL = 1e-12  # float64 rounding may differ in the last bits across CPUs, not more


def _same(stored, fresh, where):
    if isinstance(fresh, dict):
        assert stored.keys() == fresh.keys(), where
        for key in fresh:
            _same(stored[key], fresh[key], f"{where}.{key}")
    elif isinstance(fresh, list):
        assert len(stored) == len(fresh), where
        for i, (a, b) in enumerate(zip(stored, fresh, strict=True)):
            _same(a, b, f"{where}[{i}]")
    elif isinstance(fresh, float):
        assert math.isclose(stored, fresh, rel_tol=RTOL, abs_tol=1e-15), where
    else:
        assert stored == fresh, where


def test_golden_file_is_what_crossent_computes_today():
    stored = json.loads(golden.PATH.read_text())
    fresh = json.loads(golden.dumps(golden.compute()))
    # on a mismatch: python -m tests.cli.web.golden rewrites the file (review the diff)
    _same(stored, fresh, "golden")


def test_golden_file_has_numbers_and_errors():
    cases = json.loads(golden.PATH.read_text())["cases"]
    results = [r for case in cases for r in case["expected"].values()]
    assert sum("error" in r for r in results) >= 5
    assert sum("value" in r for r in results) >= 200


def _node_version():
    node = shutil.which("node")
    if node is None:
        return None, None
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    return node, int(re.match(r"v(\d+)", out.strip()).group(1))


def test_javascript_module_reproduces_the_golden_file():
    node, major = _node_version()
    if node is None:
        pytest.skip("node is not installed: the page's math (losses.mjs) is not checked here")
    if major < 18:
        pytest.skip(f"node v{major} has no test runner (node --test needs v18 or later)")
    result = subprocess.run(
        [node, "--test", str(HERE / "losses.test.mjs")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"^# fail 0$", result.stdout, re.M), result.stdout[-2000:]
    passed = int(re.search(r"^# pass (\d+)$", result.stdout, re.M).group(1))
    assert passed == len(golden.cases()) + 4
