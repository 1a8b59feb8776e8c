import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from crossent.calibration import (
    calibration_bins,
    confidence_histogram,
    expected_calibration_error,
    maximum_calibration_error,
    reliability_diagram,
    reliability_diagrams,
)


def _data(n=3000, k=5, temperature=2.5):
    gen = torch.Generator().manual_seed(0)
    z = 1.5 * torch.randn(n, k, generator=gen)
    labels = torch.multinomial(torch.softmax(z, dim=1), 1, generator=gen).squeeze(1)
    return torch.softmax(temperature * z, dim=1), labels


def _png(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    data = buffer.getvalue()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    pixels = imread(io.BytesIO(data))
    return pixels


def _assert_drawn(pixels, width, height):
    assert pixels.shape[:2] == (height, width)
    rgb = pixels[..., :3]
    assert rgb.std() > 0.1  # not a blank canvas
    not_white = (rgb < 0.95).any(axis=2).mean()
    assert 0.05 < not_white < 0.9
    # both bar colours are present: blue "Output" and red "Gap"
    blue = (rgb[..., 2] > 0.5) & (rgb[..., 0] < 0.3)
    red = (rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.8) & (rgb[..., 2] < 0.8)
    assert blue.mean() > 0.01 and red.mean() > 0.001


def _legend_texts(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_reliability_diagram_png_and_content():
    probs, labels = _data()
    fig = reliability_diagram(probs, labels, n_bins=10, title="over-confident")
    _assert_drawn(_png(fig), 480, 600)
    top, bottom = fig.axes
    assert top.get_title() == "over-confident"
    texts = _legend_texts(top)
    ece = expected_calibration_error(probs, labels, n_bins=10).item()
    mce = maximum_calibration_error(probs, labels, n_bins=10).item()
    assert texts[:3] == ["Output", "Gap", "Perfect calibration"]
    assert texts[3] == f"ECE = {100 * ece:.2f}%" and texts[4] == f"MCE = {100 * mce:.2f}%"
    # the bars are the bins' arrays: 10 accuracy bars and 10 gap bars
    bins = calibration_bins(probs, labels, n_bins=10)
    output, gap = top.containers
    heights = np.array([bar.get_height() for bar in output])
    np.testing.assert_allclose(heights, np.nan_to_num(bins.accuracy.numpy()), atol=1e-6)
    gaps = np.array([bar.get_height() for bar in gap])
    expected = np.nan_to_num((bins.confidence - bins.accuracy).abs().numpy())
    np.testing.assert_allclose(gaps, expected, atol=1e-6)
    # the histogram below shows the share of predictions per bin
    shares = np.array([bar.get_height() for bar in bottom.containers[0]])
    np.testing.assert_allclose(shares, bins.counts.numpy() / 3000, atol=1e-12)


def test_reliability_diagram_binary_and_into_given_axes():
    from matplotlib.figure import Figure

    gen = torch.Generator().manual_seed(1)
    probs = torch.rand(2000, generator=gen)
    labels = (torch.rand(2000, generator=gen) < probs**2).long()
    fig = Figure(figsize=(4, 4), dpi=100)
    ax = fig.add_subplot()
    assert reliability_diagram(probs, labels, ax=ax) is fig
    assert len(fig.axes) == 1  # no histogram when drawing into an existing axes
    assert ax.get_ylabel() == "Fraction of positives"
    _assert_drawn(_png(fig), 400, 400)


def test_confidence_histogram_png():
    probs, labels = _data()
    fig = confidence_histogram(probs, labels, n_bins=15)
    pixels = _png(fig)
    assert pixels.shape[:2] == (300, 480)
    assert pixels[..., :3].std() > 0.1
    (ax,) = fig.axes
    assert len(ax.containers[0]) == 15
    texts = _legend_texts(ax)
    assert texts[0].startswith("Accuracy = ") and texts[1].startswith("Avg. confidence = ")


def test_side_by_side_diagrams():
    probs, labels = _data()
    logits = torch.log(probs)
    fig = reliability_diagrams(
        {"raw": (logits, labels), "T = 2.5": (logits / 2.5, labels)}, from_logits=True
    )
    _assert_drawn(_png(fig), 960, 600)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["raw", "T = 2.5"]
    with pytest.raises(TypeError, match="non-empty mapping"):
        reliability_diagrams({})


def test_diagram_input_errors_come_from_the_checks():
    probs, labels = _data(n=50)
    with pytest.raises(ValueError, match="`n_bins` >= 1"):
        reliability_diagram(probs, labels, n_bins=0)
    with pytest.raises(ValueError, match="sum to 1"):
        reliability_diagram(probs * 0.8, labels)


def test_import_does_not_load_matplotlib_and_drawing_does_not_load_pyplot():
    code = (
        "import sys, torch\n"
        "import crossent.calibration as c\n"
        "from crossent.calibration import *\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'\n"
        "c.reliability_diagram(torch.tensor([0.2, 0.9]), torch.tensor([0, 1]))\n"
        "assert 'matplotlib' in sys.modules\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_drawing_into_a_subfigure_returns_the_figure():
    from matplotlib.figure import Figure

    probs, labels = _data(n=500)
    fig = Figure()
    left, right = fig.subfigures(1, 2)
    assert reliability_diagram(probs, labels, ax=left.add_subplot()) is fig
    assert confidence_histogram(probs, labels, ax=right.add_subplot()) is fig


def test_reliability_diagrams_names_a_bad_entry():
    probs, labels = _data(n=200)
    with pytest.raises(TypeError, match=r"`predictions\['b'\]` to be a \(probs, labels\) pair"):
        reliability_diagrams({"a": (probs, labels), "b": probs})
