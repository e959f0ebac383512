"""The report: report/README.md and report/index.html from metrics/ and plots/, never typed by hand.

- `sections`: the Markdown, one module per section (each reading its own input files) and
  `sections.SECTIONS`, their ordered registry;
- `doc`: `Inputs` and `Doc`, through which every section reads metrics/ and plots/;
- `render`: the Markdown as a standalone HTML page (markdown-it-py, heading anchors, figures);
- `depth`: the depth study's table (its own stage, `depth_study`, whose output the report reads);
- `fmt`: number formatting and Markdown building blocks.
"""
