"""The explorer in a real browser: Playwright for Python drives Debian's chromium
(`executable_path`; `playwright install` cannot download a browser here).

The site is built from the real EfficientNet-Lite0 head (1,000 ImageNet classes, from its PyPI
package) through the same writers as the pipeline. Asserted: the search finds every one of the
1,000 class names and clicking a result opens that class; sorting works; no request leaves
file://; no JavaScript console error; images load; the keyboard reaches the search box and the
sort buttons; a class page's screenshot is not blank. The crawl for broken links parses the
HTML (test_explorer.crawl); the browser opens a sample of pages of each kind.
"""

import io
import shutil
import time

import numpy as np
import pytest

from conftest import ROOT
from fclens.core.params import load_params
from fclens.core.sections import Explorer
from fclens.explorer import build, gather
from fclens.models.heads import linear_head
from fclens.models.registry import build_model, class_names
from test_explorer import crawl, weights_project

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium; .ci/run "
                             "installs it when it can): the browser test needs a real browser")]
LITE0 = "tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The explorer of the real Lite0 head, as the explorer stage builds it."""
    root = tmp_path_factory.mktemp("lite0")
    model = build_model(load_params(ROOT / "params.yaml").model(LITE0))
    head = linear_head(model).to_head(class_names(model, None, LITE0))
    weights_project(root, LITE0, head)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        md = gather.load(gather.paths(LITE0, None, False, [], []))
        t0 = time.perf_counter()
        metrics = build([md], root / "explorer", Explorer(models=[LITE0]), {})
        metrics["seconds"] = time.perf_counter() - t0
    return root / "explorer", head.names, metrics


class Browser:
    """One headless chromium page that records console errors and every request."""

    def __init__(self, pw):
        self.browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=["--no-sandbox"])
        self.page = self.browser.new_page(viewport={"width": 1200, "height": 900})
        self.errors, self.outside, self.failed = [], [], []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))

        def route(r):
            if r.request.url.startswith("file://"):
                return r.continue_()
            self.outside.append(r.request.url)
            return r.abort()

        self.page.route("**/*", route)

    def open(self, path):
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")
        broken = self.page.evaluate(
            "Array.from(document.images).filter(i => !i.complete || !i.naturalWidth)"
            ".map(i => i.src)")
        assert broken == [], (path, broken)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = Browser(pw)
        yield b
        b.browser.close()


def test_site_figures_and_crawl(site):
    root, names, m = site
    assert m["n_class_pages"] == 1000 and m["n_feature_pages"] == 1280
    assert m["max_class_page_bytes"] <= 300_000, m
    c = crawl(root)
    assert c["pages"] == 1000 + 1280 + 3
    assert c == {**c, "broken": [], "missing_images": [], "outside": [], "no_alt": 0}
    page = next((root / LITE0).glob("0000-*.html")).read_text()
    assert "n01440764" in page and "freshwater dace-like game fish" in page  # WordNet, timm


def test_search_finds_every_class_and_opens_it(site, browser):
    root, names, _ = site
    t0 = time.perf_counter()
    b = browser
    b.open(root / LITE0 / "index.html")
    # every name typed into the box (an input event each), checked in the page: its row shows
    missed = b.page.evaluate("""names => {
        const box = document.getElementById("search"), miss = [];
        names.forEach((n, i) => {
            box.value = n;
            box.dispatchEvent(new Event("input"));
            const row = document.querySelector(`#classes tbody tr:nth-child(${i + 1})`);
            if (row.hidden) miss.push(n);
        });
        return miss;
    }""", list(names))
    assert missed == []
    # real typing and a click, for a sample: the duplicate "crane", commas, the last class
    for i in (0, 134, 517, 999, 500):
        b.page.fill("#search", "")
        b.page.type("#search", names[i])
        shown = b.page.locator("#classes tbody tr:not([hidden]) th a")
        assert names[i] in shown.all_inner_texts()  # "crane" twice: two results
        shown.and_(b.page.locator(f"a[href^='{i:04d}-']")).click()
        b.page.wait_for_load_state("load")
        assert b.page.locator("h1").inner_text().startswith(names[i])
        assert f"class {i} of" in b.page.locator("h1").inner_text()
        b.page.go_back()
    # sorting by kappa: ascending after one click
    b.page.fill("#search", "")
    b.page.dispatch_event("#search", "input")
    b.page.get_by_role("button", name="κ").click()
    v = b.page.evaluate("Array.from(document.querySelectorAll('#classes tbody tr'))"
                        ".slice(0, 50).map(r => parseFloat(r.cells[4].dataset.v))")
    assert v == sorted(v) and len(v) == 50
    # keyboard: the first Tab reaches the skip link, a few more the search box
    b.page.reload()
    b.page.keyboard.press("Tab")
    assert b.page.evaluate("document.activeElement.className") == "skip"
    for _ in range(6):
        b.page.keyboard.press("Tab")
        if b.page.evaluate("document.activeElement.id") == "search":
            break
    assert b.page.evaluate("document.activeElement.id") == "search"
    assert b.errors == [] and b.outside == [] and b.failed == []
    assert time.perf_counter() - t0 < 60


def test_sample_pages_render_offline_and_not_blank(site, browser):
    from PIL import Image

    root, _, _ = site
    b = browser
    rng = np.random.default_rng(0)
    classes = sorted((root / LITE0).glob("[0-9]*.html"))
    features = sorted((root / LITE0).glob("f[0-9]*.html"))
    sample = [root / "index.html", root / LITE0 / "index.html", root / LITE0 / "features.html",
              *(classes[i] for i in rng.choice(len(classes), 5, replace=False)),
              *(features[i] for i in rng.choice(len(features), 5, replace=False))]
    for p in sample:
        b.open(p)
    b.open(classes[0])
    shot = np.asarray(Image.open(io.BytesIO(b.page.screenshot(full_page=True))).convert("L"))
    assert shot.std() > 20 and len(np.unique(shot)) > 30  # text, a chart, tables: not blank
    assert b.page.locator("svg.chart polyline").count() == 5
    assert b.errors == [] and b.outside == [] and b.failed == []
