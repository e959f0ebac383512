"""report/README.md and report/index.html from metrics/ and plots/ (never hand-edited)."""

from pathlib import Path

from _stage import run

from fclens.io import atomic_path
from fclens.report import build_markdown, markdown_to_html


def main(args, p):
    md = build_markdown(Path("."), p)
    out = Path(args.out)
    for name, text in (("README.md", md), ("index.html", markdown_to_html(md))):
        with atomic_path(out / name) as tmp:
            tmp.write_text(text)


if __name__ == "__main__":
    run("report", main, lambda ap: ap.add_argument("--out", required=True))
