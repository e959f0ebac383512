"""Number formatting and Markdown building blocks shared by the report's sections. No imports."""

from __future__ import annotations

# the explanation methods' display names (Visual explanations, Timing)
CAM_NAMES = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++",
             "smooth_gradcampp": "Smooth Grad-CAM++"}


def pct(x) -> str:
    """A fraction as a percentage; None (NaN in the JSON) -> n/a; "inf" strings as they are."""
    return "n/a" if x is None else x if isinstance(x, str) else f"{100 * x:.2f}%"


def num(x, fmt: str = ".3g") -> str:
    """None (NaN in the JSON) -> n/a; "inf"/"-inf" strings as they are."""
    return "n/a" if x is None else x if isinstance(x, str) else format(x, fmt)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub-flavoured Markdown table, followed by a blank line."""
    def cell(c) -> str:
        return str(c).replace("|", "\\|")
    return (["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(map(cell, r)) + " |" for r in rows] + [""])


def figure(src: str, caption: str) -> list[str]:
    """An image with its caption on the next line (a hard break, then italics).

    GitHub shows the caption under the image; `render` turns the pair into <figure> with a
    <figcaption>. `src` is relative to report/ (e.g. ../plots/depth.png).
    """
    alt = src.removeprefix("../").removeprefix("plots/").removesuffix(".png")
    return [f"![{alt}]({src})\\", f"*{caption}*", ""]


def slug(title: str, seen: dict[str, int] | None = None) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to '-'; repeats get -1, -2.

    The report's table of contents links these, so the links work on GitHub and in index.html.
    """
    s = "".join(ch for ch in title.lower() if ch.isalnum() or ch in "-_ ").replace(" ", "-")
    if seen is not None:
        n = seen.get(s, 0)
        seen[s] = n + 1
        if n:
            s = f"{s}-{n}"
    return s
