"""The drawing page in a real browser: headless Chromium (Debian's, driven by Playwright) against a
real `python -m mnist_cnn.serve` process. Strokes are drawn as a person draws them: press, move
in steps, release, in CSS pixels of the canvas.

A screenshot of a drawn 7, its prediction and where the net looked goes to a temporary folder;
to make the README's:

    MNIST_CNN_SCREENSHOT=docs/serve.png pytest tests/test_serve_browser.py -k seven
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .helpers import pen_digit, start_server, stop_server

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="playwright is not installed: pip install -e '.[test]' (no browser download needed)",
)
expect = sync_api.expect

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)
if CHROMIUM is None:
    pytest.skip(
        "no Chromium on the PATH (looked for chromium, chromium-browser, google-chrome): "
        "apt-get install chromium",
        allow_module_level=True,
    )

# Strokes in the canvas's unit square (x right, y down), as a person writes the digits.
STROKES = {
    1: [[(0.56, 0.15), (0.47, 0.85)]],  # MNIST's 1s are mostly one stroke: a flag makes many a 7
    4: [[(0.62, 0.85), (0.62, 0.15), (0.25, 0.6), (0.78, 0.6)]],
    7: [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]],
}


@pytest.fixture(scope="module")
def server_url():
    server, url = start_server()
    yield url
    stop_server(server)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox refuses to run as root (CI containers);
        # --no-proxy-server: the tests point proxies at a closed port (see conftest's no_network).
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--no-proxy-server"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server_url):
    """The drawing page, loaded, its ten bars made from GET /model. No script errors are allowed,
    nor a failed request but for /predict's answers to bad files."""
    context = browser.new_context(viewport={"width": 900, "height": 560})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "response",
        lambda response: (
            response.status >= 400
            and "/predict" not in response.url
            and errors.append(f"{response.status} {response.url}")
        ),
    )
    page.goto(server_url)
    expect(page.locator("#model")).to_contain_text("8,880 parameters")
    yield page
    context.close()
    assert not errors, errors


def draw(page, digit: int, steps: int = 12) -> None:
    """Draw digit's strokes with the mouse, in CSS pixels of the canvas's bounding box."""
    box = page.locator("#pad").bounding_box()

    def at(x: float, y: float) -> tuple[float, float]:
        return box["x"] + x * box["width"], box["y"] + y * box["height"]

    for stroke in STROKES[digit]:
        page.mouse.move(*at(*stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*at(*point), steps=steps)
        page.mouse.up()


def expect_answer(page, label: str) -> None:
    """Once the last answer is in (aria-busy), the page shows label as the prediction, with ten
    bars (label's the best) and the 28x28 image the net saw."""
    expect(page.locator("#answer")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#label")).to_have_text(label)
    expect(page.locator("#bars li")).to_have_count(10)
    expect(page.locator("#bars li.best .name")).to_have_text(label)
    expect(page.locator("#probability")).to_contain_text("%")
    assert page.locator("#seen").get_attribute("src").startswith("data:image/png;base64,")


def predict_urls(page) -> list[str]:
    """The addresses of the page's requests to /predict from now on (a list that grows)."""
    urls: list[str] = []
    page.on("request", lambda request: "/predict" in request.url and urls.append(request.url))
    return urls


def heat_colours(page) -> int:
    """How many different colours the class map's 28x28 canvas holds (0 when it is blank)."""
    return page.evaluate(
        """() => {
            const data = document.getElementById("heat").getContext("2d").getImageData(0, 0, 28, 28).data;
            const colours = new Set();
            for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 0) colours.add(data.slice(i, i + 3).join());
            return colours.size;
        }"""
    )


def test_a_drawn_seven_is_read_and_shown(page):
    draw(page, 7)
    expect_answer(page, "7")
    expect(page.locator("#source")).to_have_text("from your drawing")
    expect(page.locator("#heat")).to_be_hidden()


def test_the_checkbox_shows_where_the_net_looked_at_a_seven(page, tmp_path):
    """Unticked, no map is asked for or shown; ticked, the drawing is read again with ?explain=1
    and its class map covers the 28x28 image; unticked again, it goes, without a request."""
    urls = predict_urls(page)
    draw(page, 7)
    expect_answer(page, "7")
    assert urls and not any("explain" in url for url in urls)
    expect(page.locator("#heat")).to_be_hidden()

    page.check("#explain")
    expect(page.locator("#heat")).to_be_visible()
    expect(page.locator("#heat-note")).to_contain_text("net's coordinates")
    expect_answer(page, "7")
    assert "explain=1" in urls[-1]
    assert heat_colours(page) > 20  # a map from blue to red, not one flat colour
    heat, seen = page.locator("#heat").bounding_box(), page.locator("#seen").bounding_box()
    assert heat == seen  # over the image the net saw, exactly
    screenshot = Path(os.environ.get("MNIST_CNN_SCREENSHOT") or tmp_path / "serve.png")
    page.screenshot(path=screenshot, full_page=True, animations="disabled")  # the bars grown full
    assert screenshot.stat().st_size > 10_000

    asked = len(urls)
    page.uncheck("#explain")
    expect(page.locator("#heat")).to_be_hidden()
    expect(page.locator("#heat-note")).to_be_hidden()
    page.wait_for_timeout(400)  # longer than the page waits before asking
    assert len(urls) == asked


def test_a_drawn_one_then_clear_then_a_four(page):
    draw(page, 1)
    expect_answer(page, "1")
    page.click("#clear")
    expect(page.locator("#label")).to_have_text("?")
    assert page.locator("#seen").get_attribute("src") is None
    draw(page, 4)
    expect_answer(page, "4")


def test_a_photo_from_the_file_picker_is_read_and_its_map_shown_when_asked(page, tmp_path):
    pen_digit(4, width=6).save(tmp_path / "four.png")
    page.set_input_files("#file", tmp_path / "four.png")
    expect_answer(page, "4")
    expect(page.locator("#source")).to_have_text("from four.png")
    expect(page.locator("#heat")).to_be_hidden()
    page.check("#explain")  # the photo is read again, with its map
    expect(page.locator("#heat")).to_be_visible()
    expect_answer(page, "4")
    assert heat_colours(page) > 20
    page.click("#clear")
    expect(page.locator("#heat")).to_be_hidden()


def test_a_file_that_is_no_image_shows_the_servers_sentence(page, tmp_path):
    (tmp_path / "notes.png").write_text("dear diary")
    page.set_input_files("#file", tmp_path / "notes.png")
    expect(page.locator("#error")).to_contain_text("notes.png: not an image")


def test_a_finger_draws_on_a_phone_sized_page(browser, server_url):
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(server_url)
    expect(page.locator("#bars li")).to_have_count(10)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
    box = page.locator("#pad").bounding_box()
    assert box["width"] <= 390 and box["width"] == pytest.approx(box["height"])
    # Touch events as a finger makes them, through the DevTools protocol (Playwright only taps).
    cdp = context.new_cdp_session(page)
    points = [(0.55, 0.15 + 0.07 * i) for i in range(11)]
    for n, (x, y) in enumerate(points):
        kind = "touchStart" if n == 0 else "touchMove"
        point = {"x": box["x"] + x * box["width"], "y": box["y"] + y * box["height"]}
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [point]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    expect_answer(page, "1")
    context.close()


def test_the_api_docs_work_offline_under_the_pages_security_policy(browser, server_url):
    """/docs with every other site blocked: Swagger UI comes from the server, runs under its
    Content-Security-Policy (no violation reported), and shows the three operations."""
    context = browser.new_context()
    blocked, problems = [], []
    context.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(server_url)
            else (blocked.append(route.request.url), route.abort())
        ),
    )
    page = context.new_page()
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.goto(f"{server_url}/docs")
    for operation in ("GET/health", "GET/model", "POST/predict"):
        method, path = operation[: operation.index("/")], operation[operation.index("/") :]
        block = page.locator(".opblock", has=page.locator(".opblock-summary-method", has_text=method))
        expect(block.filter(has=page.locator(f'[data-path="{path}"]'))).to_have_count(1)
    context.close()
    assert not blocked and not problems, (blocked, problems)
