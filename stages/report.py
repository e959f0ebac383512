"""report/README.md and report/index.html from metrics/ and plots/ (never hand-edited)."""

from pathlib import Path

from _stage import run
from fclens.io import atomic_path
from fclens.report.render import render_html
from fclens.report.sections import Inputs, build_markdown


def main(args, p):
    inp = Inputs(root=Path("."), models=list(p.models),
                 archs={m: spec.arch for m, spec in p.models.items()},
                 feature_models=dict(p.feature_models), photo_models=list(p.explain.photo_models),
                 depth_models=list(p.depth_study.models), finetune_models=list(p.finetune.models))
    md = build_markdown(inp)  # every input is read and checked before anything is written
    html = render_html(md)
    for name, text in (("README.md", md), ("index.html", html)):
        with atomic_path(Path(args.out) / name) as tmp:
            tmp.write_text(text)


if __name__ == "__main__":
    run("report", main, "out")
