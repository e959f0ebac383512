"""The explorer: where the site is and what it holds, from metrics/explorer.json (the
explorer stage, fclens.explorer)."""

from __future__ import annotations

from fclens.report.doc import Inputs

EXPLORER_JSON = "metrics/explorer.json"
SITE = "explorer/index.html"


def section_explorer(inp: Inputs) -> list[str]:
    e = inp.json(EXPLORER_JSON)
    return [f"A page for every class and every penultimate feature: [{SITE}](../{SITE}) "
            f"(open it in a browser; it works from `file://`, offline). "
            f"{e['n_models']} models ({', '.join(e['models'])}), {e['n_class_pages']:,} class "
            f"pages, {e['n_feature_pages']:,} feature pages and {e['n_images']:,} exemplar "
            f"thumbnails; {e['total_bytes'] / 1e6:.1f} MB in all, the largest class page "
            f"{e['max_class_page_bytes'] / 1e3:.0f} KB. The site is a cached DVC output (not in "
            f"git): `make repro` (or `dvc repro explorer`) builds it.", ""]
