"""The explorer (fclens.explorer): pages from a weight-only model built with the real writers,
escaping and safe file names for hostile class names, a crawl for broken links and outside
requests, and the bad inputs of the issue. The dataset path runs in the smoke project
(test_pipeline_e2e.py) and the browser test in test_explorer_browser.py."""

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from fclens.analysis import ald, trees
from fclens.core import tables
from fclens.core.errors import FclensError
from fclens.core.sections import Explorer
from fclens.explorer import build, gather, svg
from fclens.explorer.pages import fmt

HOSTILE = ('<b>cat</b> & "dog"', "AC/DC", "crane", "crane", "naïve ümlaut", "../../etc/passwd")


def weights_project(root: Path, model: str, head: tables.Head) -> None:
    """data/<model>/ as extract_weights, fit_ald and build_trees write it."""
    out = root / "data" / model
    out.mkdir(parents=True, exist_ok=True)
    tables.write_fc_weights(out / "fc_weights.parquet", head)
    tables.write_ald(out, ald.compare_families(head.w), head.names, tuple(ald.FAMILIES))
    forest = trees.build_trees(head.w, "chain", 5)
    nodes, terms, _ = trees.tree_frames(forest, head.w, head.names, "chain")
    tables.write_trees(out, nodes, terms, head.n_classes)


def head_of(names: tuple[str, ...], d: int = 40, seed: int = 0) -> tables.Head:
    rng = np.random.default_rng(seed)
    w = rng.laplace(size=(len(names), d)).astype(np.float32)
    return tables.Head(w, rng.normal(size=len(names)).astype(np.float32), names)


class Links(HTMLParser):
    """Every href / src of a page, and the alt text of its images."""

    def __init__(self):
        super().__init__()
        self.refs, self.imgs_without_alt, self.ids = [], 0, set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("href", "src"):
            if a.get(k) is not None:
                self.refs.append((tag, a[k]))
        if tag == "img" and not a.get("alt"):
            self.imgs_without_alt += 1
        if "id" in a:
            self.ids.add(a["id"])


def crawl(site: Path) -> dict:
    """Parse every page: broken internal links, missing images, outside references."""
    broken, missing, outside, no_alt, pages = [], [], [], 0, 0
    for page in site.rglob("*.html"):
        pages += 1
        p = Links()
        p.feed(page.read_text())
        no_alt += p.imgs_without_alt
        for tag, ref in p.refs:
            u = urlparse(ref)
            if u.scheme or u.netloc or ref.startswith("//"):
                outside.append((page, ref))
                continue
            if not u.path:  # "#main"
                continue
            target = (page.parent / u.path).resolve()
            if not target.is_file() or site.resolve() not in target.parents:
                (missing if tag == "img" else broken).append((page, ref))
    return {"pages": pages, "broken": broken, "missing_images": missing, "outside": outside,
            "no_alt": no_alt}


def test_weight_only_site_escapes_names_and_has_no_broken_link(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    head = head_of(HOSTILE)
    weights_project(tmp_path, "tiny", head)
    md = gather.load(gather.paths("tiny", None, False, [], []))
    m = build([md], tmp_path / "site", Explorer(models=["tiny"]), {})
    assert m["n_models"] == 1 and m["n_class_pages"] == 6 and m["n_feature_pages"] == 40
    site = tmp_path / "site"
    files = sorted(p.name for p in (site / "tiny").glob("[0-9]*.html"))  # the class pages
    assert files[0].startswith("0000-b-cat-b-dog") and "0001-ac-dc.html" in files
    assert "0005-etc-passwd.html" in files  # no path traversal, no slash, no HTML in names
    assert all(re.fullmatch(r"\d{4}-[a-z0-9_-]+\.html", f) for f in files)
    assert len(set(files)) == 6  # the two "crane" classes keep apart by index
    page = (site / "tiny" / files[0]).read_text()
    assert "<b>cat</b>" not in page and "&lt;b&gt;cat&lt;/b&gt; &amp; &#34;dog&#34;" in page
    assert "nan" not in page.lower().replace("naïve", "")
    c = crawl(site)
    assert c["pages"] == 6 + 40 + 3  # classes, features, class list + feature list + index
    assert c == {**c, "broken": [], "missing_images": [], "outside": [], "no_alt": 0}
    # five families drawn, the page carries its own numbers
    assert page.count("<polyline") == len(ald.FAMILIES)
    aic = float(md.gof["gaussian_aic"].iat[0])
    assert fmt(aic, 5) in page
    assert m["max_class_page_bytes"] == max(
        p.stat().st_size for p in (site / "tiny").glob("[0-9]*.html"))
    assert m["total_bytes"] == sum(p.stat().st_size for p in site.rglob("*") if p.is_file())


def test_a_second_build_gives_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights_project(tmp_path, "tiny", head_of(HOSTILE[:3]))
    md = gather.load(gather.paths("tiny", None, False, [], []))
    a = build([md], tmp_path / "a", Explorer(models=["tiny"]), {})
    b = build([md], tmp_path / "b", Explorer(models=["tiny"]), {})
    assert a == b
    for f in (tmp_path / "a").rglob("*.html"):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()


def test_density_chart_draws_each_curve_and_skips_nan():
    grid = np.linspace(-1, 1, 20)
    curves = {"ald": np.exp(-np.abs(grid)), "gaussian": np.full(20, np.nan)}
    s = svg.density_chart(np.linspace(-1, 1, 5), np.ones(4), grid, curves, "ald", "t<&>")
    assert s.count("<polyline") == 2 and "t&lt;&amp;&gt;" in s and "nan" not in s.lower()
    assert 'polyline class="c0 best"' in s and 'class="e c0 best"' in s  # thick, bold


def test_model_without_weight_tables_names_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FclensError, match=r"explorer.models: 'ghost' has no weight tables "
                                          r"\(data/ghost/fc_weights.parquet is missing"):
        gather.load(gather.paths("ghost", None, False, [], []))


def test_constant_weight_row_names_the_file_and_class(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    head = head_of(("a", "b", "c"))
    head.w[1] = 0.0
    out = tmp_path / "data" / "flat"
    out.mkdir(parents=True)
    tables.write_fc_weights(out / "fc_weights.parquet", head)
    with pytest.raises(FclensError, match=r"data/flat/fc_weights.parquet: class 1 \('b'\) has "
                                          r"a constant weight row \(every weight 0"):
        gather.load(gather.paths("flat", None, False, [], []))


def test_fmt_never_prints_nan():
    assert fmt(float("nan")) == fmt(None) == "–"
    assert fmt(3) == "3" and fmt(0.123456) == "0.123"


def test_per_class_inputs_are_read_by_class_index_and_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    head = head_of(("a", "b", "c"))
    weights_project(tmp_path, "m", head)
    gof = tables.read_frame("data/m/ald_gof.parquet", tables.ALD_GOF, 3)
    rev = gather._per_class(gof.iloc[::-1], Path("x.parquet"), head, "m")  # rows reversed
    assert rev["class_index"].tolist() == [0, 1, 2] and rev.equals(gof)
    with pytest.raises(FclensError, match=r"x.parquet: 2 rows .* one row per class 0..2"):
        gather._per_class(gof.iloc[:2], Path("x.parquet"), head, "m")
    (tmp_path / "metrics/m").mkdir(parents=True)
    (tmp_path / "metrics/m/geometry.json").write_text(
        '{"weights": {"per_class": {"w_norm": [1.0, 2.0]}}}')
    with pytest.raises(FclensError, match=r"geometry.json: weights.per_class.w_norm holds 2 "
                                          r"values; expected one per class \(3"):
        gather.load(gather.paths("m", None, False, [], []))


def test_models_whose_folders_clash_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for m in ("Net", "net"):
        weights_project(tmp_path, m, head_of(("a", "b")))
    mds = [gather.load(gather.paths(m, None, False, [], [])) for m in ("Net", "net")]
    with pytest.raises(FclensError, match=r"explorer.models: \['Net', 'net'\] give the page "
                                          r"folders \['net'\] twice"):
        build(mds, tmp_path / "site", Explorer(models=["Net", "net"]), {})
    assert not (tmp_path / "site").exists()
