"""The calculator page in Chromium: move its controls, read its numbers, compare with crossent.

Sliders are moved by setting their value and dispatching an ``input`` event, as a drag does.
Each displayed number is compared with crossent's (``crossent calc``'s ``evaluate_losses``, or
the registry module for a soft target) for the crossent spec the page shows for that loss.
"""

import math

import pytest
import torch
from PIL import Image

from crossent import get_loss
from crossent.cli.calc import evaluate_losses
from crossent.cli.web import write_page
from tests.cli.web import screenshot
from tests.cli.web.pages import check_phone_width

TOL = 1e-6
READ = """() => {
  const num = (tr, cls) => {
    const td = tr.querySelector('td.' + cls);
    return td ? td.textContent : null;
  };
  const rows = {};
  for (const tr of document.querySelectorAll('#table tbody tr')) {
    const error = tr.querySelector('td.error');
    const loss = tr.dataset.loss;
    rows[loss] = {
      spec: tr.querySelector('.spec').textContent, error: error ? error.textContent : null,
      value: num(tr, 'value'), chance: num(tr, 'chance'), min: num(tr, 'min_achievable'),
      gradient: [...document.querySelectorAll(`#gradient-table tr[data-loss="${loss}"] td`)]
        .map((td) => td.textContent),
    };
  }
  return rows;
}"""


def move(page, selector, value):
    """Set an input's value and dispatch ``input`` (what dragging a slider or typing does)."""
    page.eval_on_selector(
        selector,
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }",
        str(value),
    )


def slider(name):
    return f"input[aria-label='{name} slider']"


def crossent_numbers(spec, logits, target, binary=False):
    """value, chance, min and gradient of ``spec`` by crossent (min None for soft targets)."""
    if isinstance(target, list):
        module = get_loss(spec)
        z = torch.tensor([logits], dtype=torch.float64, requires_grad=True)
        p = torch.tensor([target], dtype=torch.float64)
        value = module(z, p)
        (grad,) = torch.autograd.grad(value, z)
        chance = module(torch.zeros_like(z), p).item()
        return value.item(), chance, None, grad.reshape(-1).tolist()
    (row,) = evaluate_losses(logits, target, [spec], binary=binary)
    return row["value"], row["chance"], row["min_achievable"], row["gradient"]


def check_against_crossent(rows, logits, target, binary=False):
    assert rows, "no loss shown"
    for name, row in rows.items():
        assert row["error"] is None, (name, row["error"])
        value, chance, minimum, gradient = crossent_numbers(row["spec"], logits, target, binary)
        assert float(row["value"]) == pytest.approx(value, abs=TOL), (name, row["spec"])
        assert float(row["chance"]) == pytest.approx(chance, abs=TOL), name
        if minimum is None:
            assert row["min"] == "—"
        else:
            assert float(row["min"]) == pytest.approx(minimum, abs=TOL), name
        shown = [float(g) for g in row["gradient"]]
        assert shown == pytest.approx(gradient, abs=TOL), name


def test_sliders_move_the_numbers_to_crossents(open_page, calc_url):
    page, console = open_page(calc_url)
    move(page, "#k", 4)
    for j, z in enumerate([1.25, -0.5, 0.75, 3.1]):
        move(page, slider(f"z{j}"), z)
    page.select_option("#true-class", "2")
    move(page, slider("ε"), 0.1)
    page.check("input[name=convention][value=others]")
    move(page, "[data-param='focal.gamma'] input[type=range]", 1.5)
    move(page, "[data-param='gce.q'] input[type=range]", 0.4)
    rows = page.evaluate(READ)
    assert set(rows) == {"ce", "focal", "gce", "sgce", "mae", "rce", "sce", "poly1", "brier"}
    assert rows["focal"]["spec"] == "focal(gamma=1.5, label_smoothing=0.1, smoothing='others')"
    assert rows["gce"]["spec"] == "gce(q=0.4, label_smoothing=0.1, smoothing='others')"
    check_against_crossent(rows, [1.25, -0.5, 0.75, 3.1], 2)
    assert console.errors == []


def test_probabilities_are_renormalised(open_page, calc_url):
    page, console = open_page(calc_url)
    before = torch.softmax(torch.tensor([2.0, 0.5, -1.0], dtype=torch.float64), 0).tolist()
    page.check("input[name=input][value=probs]")
    move(page, slider("p1"), 0.5)
    # the page's rule: p1 = 0.5, the others keep their ratios above a floor of 1e-6
    rest = before[0] + before[2]
    probs = [1e-6 + p / rest * (1 - 0.5 - 2e-6) for p in before]
    probs[1] = 0.5
    fields = [float(page.input_value(f"input[aria-label='p{j}']")) for j in range(3)]
    assert fields == pytest.approx(probs, abs=1e-5) and sum(fields) == pytest.approx(1, abs=1e-5)
    logits = [math.log(p / sum(probs)) for p in probs]
    check_against_crossent(page.evaluate(READ), logits, 0)
    assert console.errors == []


def test_binary_mode(open_page, calc_url):
    page, console = open_page(calc_url)
    page.check("input[name=mode][value=binary]")
    move(page, slider("z"), -0.8)
    move(page, slider("y"), 0.3)
    move(page, slider("ε"), 0.1)
    move(page, "[data-param='sigmoid_focal.gamma'] input[type=range]", 1)
    rows = page.evaluate(READ)
    assert set(rows) == {"bce", "sigmoid_focal", "binary_gce", "binary_sgce"}
    check_against_crossent(rows, [-0.8], 0.3, binary=True)
    assert console.errors == []


def test_soft_target_and_what_crossent_refuses(open_page, calc_url):
    page, console = open_page(calc_url)
    page.check("input[name=target][value=soft]")
    move(page, slider("P0"), 0.5)  # from (0.7, 0.2, 0.1): the others keep their ratio 2:1
    move(page, slider("ε"), 0.05)
    rows = page.evaluate(READ)
    refused = rows.pop("sgce")  # smoothing='others' (its default) with a probability target
    assert "crossent raises" in refused["error"] and "`smoothing`" in refused["error"]
    with pytest.raises(ValueError, match="`smoothing`"):
        get_loss("sgce")(torch.zeros(1, 3), torch.tensor([[0.5, 1 / 3, 1 / 6]]))
    check_against_crossent(rows, [2.0, 0.5, -1.0], [0.5, 1 / 3, 1 / 6])
    assert console.errors == []


def test_plot_marks_the_current_point_and_follows_the_selection(open_page, calc_url):
    page, console = open_page(calc_url)
    page.uncheck("#losses input[data-loss='brier']")
    lines = page.eval_on_selector_all("#plot polyline", "ls => ls.map((l) => l.dataset.loss)")
    assert sorted(lines) == sorted(["ce", "focal", "gce", "sgce", "mae", "rce", "sce", "poly1"])
    assert page.locator("#table tr[data-loss='brier']").count() == 0
    p0 = torch.softmax(torch.tensor([2.0, 0.5, -1.0]), 0)[0].item()
    dots = page.eval_on_selector_all("#plot circle", "cs => cs.map((c) => +c.getAttribute('cx'))")
    assert len(dots) == 8 and dots == pytest.approx([48 + p0 * 580] * 8, abs=0.01)
    assert console.errors == []


def test_readme_screenshot_is_not_blank(browser, tmp_path):
    path = screenshot.take(browser, tmp_path, tmp_path / "calc.png")  # raises on console errors
    image = Image.open(path).convert("RGB")
    assert image.size == (1280, 990) and path.stat().st_size < 150_000
    colors = image.getcolors(maxcolors=1 << 20)
    assert len(colors) > 100  # text, curves, bars: far from one flat colour
    assert max(count for count, _ in colors) < 0.9 * image.width * image.height


def test_written_page_works_offline_from_disk(open_page, tmp_path):
    path = write_page(tmp_path)
    page, console = open_page(path.as_uri())
    check_against_crossent(page.evaluate(READ), [2.0, 0.5, -1.0], 0)
    assert console.errors == []
    others = [u for u in console.requests if u != path.as_uri() and not u.startswith("data:")]
    assert others == []  # one file: nothing fetched from anywhere


def test_calculator_at_phone_width(open_page, calc_url):
    check_phone_width(open_page, calc_url)
