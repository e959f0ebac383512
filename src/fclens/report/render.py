"""The report's Markdown as a standalone HTML page, by markdown-it-py (CommonMark + tables).

On top of the library's rendering: every heading gets GitHub's anchor as its id (so the table of
contents links work in both places), and an image followed by its italic caption line (see
`fmt.figure`) becomes a <figure> with a <figcaption>.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

from fclens.report.fmt import slug

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:auto;padding:0 16px;color:#222;
line-height:1.45}
h2{border-bottom:1px solid #ddd;margin-top:2em}
table{border-collapse:collapse;display:block;overflow-x:auto;margin:.5em 0 1em}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}
td{white-space:nowrap}
th{background:#f4f4f4}
code{background:#f4f4f4;padding:0 3px;border-radius:3px;font-size:90%}
figure{margin:.5em 0 1.5em}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:13px;color:#444;margin-top:4px;max-width:900px}
"""


def _plain(inline: Token) -> str:
    return "".join(c.content for c in inline.children or [] if c.type in ("text", "code_inline"))


def _anchors_and_figures(state: StateCore) -> None:
    toks, seen = state.tokens, {}
    for i, tok in enumerate(toks):
        if tok.type == "heading_open":
            tok.attrSet("id", slug(_plain(toks[i + 1]), seen))
        elif tok.type == "paragraph_open" and toks[i + 1].type == "inline":
            kids = toks[i + 1].children or []
            if (len(kids) >= 4 and kids[0].type == "image" and kids[1].type == "hardbreak"
                    and kids[2].type == "em_open" and kids[-1].type == "em_close"):
                tok.tag = toks[i + 2].tag = "figure"
                toks[i + 1].children = [kids[0], _html("<figcaption>"), *kids[3:-1],
                                        _html("</figcaption>")]


def _html(s: str) -> Token:
    t = Token("html_inline", "", 0)
    t.content = s
    return t


def markdown_renderer() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.core.ruler.push("fclens_anchors_figures", _anchors_and_figures)
    return md


def render_html(markdown: str, title: str = "fclens report") -> str:
    body = markdown_renderer().render(markdown)
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
            f"{body}</main>\n</body>\n</html>\n")
