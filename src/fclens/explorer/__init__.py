"""The explorer: an offline static site with a page for every class and every penultimate
feature of each model, built from the tables, metrics and plots the other stages wrote (it
recomputes no science).

- `gather`: one model's inputs, read and checked (`ModelData`), and the paths they come from.
- `svg`: the charts drawn in the page (weight histogram with the fitted family densities,
  activation histograms, bars): inline SVG, not thousands of matplotlib PNGs.
- `pages`: the HTML (Jinja2 templates in `templates/`, autoescaped: class names are data).
- `site`: the whole site into one folder, written atomically, and its size figures.

The site opens from file:// without a server and makes no network request: relative links,
one CSS and one JS file of its own (`assets/`), no font or script from elsewhere. Without
JavaScript every page and table is there; only the search box and sorting need it.
"""

from fclens.explorer.site import build

__all__ = ["build"]
