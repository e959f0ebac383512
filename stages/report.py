"""report/README.md and report/index.html from metrics/ and plots/ (never hand-edited)."""

from _stage import run
from fclens.core import io
from fclens.report import render
from fclens.report.doc import Inputs
from fclens.report.sections import build_markdown


def main(a, p):
    md = build_markdown(Inputs.from_params(".", p))  # all inputs checked first
    io.write_text(f"{a.out}/README.md", md)
    io.write_text(f"{a.out}/index.html", render.render_html(md))


if __name__ == "__main__":
    run("report", main, "out")
