"""report/README.md and report/index.html from metrics/ and plots/ (never hand-edited)."""

from pathlib import Path

from _stage import run
from fclens.io import write_text
from fclens.report.render import render_html
from fclens.report.sections import Inputs, build_markdown


def main(a, p):
    md = build_markdown(Inputs.from_params(Path("."), p))  # every input read and checked first
    write_text(Path(a.out) / "README.md", md)
    write_text(Path(a.out) / "index.html", render_html(md))


if __name__ == "__main__":
    run("report", main, "out")
