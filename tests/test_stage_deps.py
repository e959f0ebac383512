"""Each stage's dvc.yaml deps cover exactly the fclens code its script runs, as folder deps that
the layered layout makes meaningful, so an edit reruns the stages that use it and no others.

The code a stage runs is the transitive closure of its script's fclens imports (module level or
inside functions). dvc.yaml names it at the granularity of `dep_of`: a foundation package (core,
datasets, models, extract, plots) as one folder, an analysis / explanation / report family as
its sub-package folder, any other module as its file. The test checks both ways: every module
run is covered, and every listed path holds at least one module run. `python
tests/test_stage_deps.py --write` rewrites the deps in dvc.yaml from the imports.
"""

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ROOT  # noqa: E402

SRC = ROOT / "src" / "fclens"
# one dep line each (explorer: its templates and assets are files of the folder, not modules)
FOLDER_PACKAGES = ("core", "datasets", "models", "plots", "explorer")


def _module_file(name: str) -> Path:
    p = SRC.joinpath(*name.split(".")[1:])
    return p / "__init__.py" if p.is_dir() else p.with_suffix(".py")


def _imports(path: Path, package: str) -> set[str]:
    """fclens modules imported anywhere in `path` (module level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] == "fclens":
                for alias in node.names:  # `from fclens.core import tables` imports a module
                    sub = f"{base}.{alias.name}"
                    out.add(sub if _module_file(sub).exists() else base)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "fclens"}
    return out


def _string_imports(path: Path) -> set[str]:
    """Modules named in "module:attr" strings (a registry that imports on demand, e.g. the
    extraction backends): they run too."""
    return {m for m in re.findall(r"[\"'](fclens(?:\.\w+)+):\w+[\"']", path.read_text())}


def module_closure(script: Path) -> set[str]:
    """Transitive fclens modules of a stage script, including package __init__ files run."""
    todo, seen = list(_imports(script, "")), set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        f = _module_file(m)
        pkg = m if f.name == "__init__.py" else m.rsplit(".", 1)[0]
        todo += list(_imports(f, pkg) | _string_imports(f))
        parts = m.split(".")
        for i in range(1, len(parts)):  # importing fclens.models.spec runs fclens/models/__init__
            todo.append(".".join(parts[:i]))
    return seen


def _trivial(path: Path) -> bool:
    """A package __init__ with no code (a docstring at most): no output depends on it."""
    body = ast.parse(path.read_text()).body
    return path.name == "__init__.py" and all(
        isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def dep_of(module: str) -> str | None:
    """The dvc.yaml dep that covers `module`; None for a package __init__ without code."""
    parts, f = module.split(".")[1:], _module_file(module)
    if not parts or _trivial(f):  # fclens/__init__.py holds only the version
        return None
    if parts[0] in FOLDER_PACKAGES:
        return f"src/fclens/{parts[0]}"
    if len(parts) >= 2 and (SRC / parts[0] / parts[1]).is_dir():  # a family: analysis/ald
        return f"src/fclens/{parts[0]}/{parts[1]}"
    return str(f.relative_to(ROOT))


def expected_deps(script: Path) -> list[str]:
    mods = module_closure(script) | module_closure(ROOT / "stages" / "_stage.py")
    return sorted({dep_of(m) for m in mods} - {None})


def _covered(module_file: str, deps: set[str]) -> bool:
    return any(module_file == d or module_file.startswith(d + "/") for d in deps)


def _stages() -> dict[str, dict]:
    return {k: v.get("do", v) for k, v in yaml.safe_load((ROOT / "dvc.yaml").read_text())
            ["stages"].items()}


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_deps_are_the_code_the_stage_runs(stage):
    s = _stages()[stage]
    script = ROOT / s["cmd"].split()[1]
    listed = {d for d in s["deps"] if isinstance(d, str) and d.startswith("src/fclens")}
    mods = module_closure(script) | module_closure(ROOT / "stages" / "_stage.py")
    files = {str(_module_file(m).relative_to(ROOT)) for m in mods
             if dep_of(m) is not None}
    missing = sorted(f for f in files if not _covered(f, listed))
    unused = sorted(d for d in listed if not any(_covered(f, {d}) for f in files))
    assert not missing and not unused, (f"{stage}: runs {missing} not in its deps; lists "
                                        f"{unused} it never imports")
    assert listed == set(expected_deps(script)), f"{stage}: regenerate with --write"
    assert script.relative_to(ROOT).as_posix() in s["deps"] and "stages/_stage.py" in s["deps"]


def write_deps() -> None:
    """Rewrite each stage's src/fclens deps in dvc.yaml (text edit: comments stay)."""
    lines = (ROOT / "dvc.yaml").read_text().split("\n")
    out, stage, i = [], None, 0
    stages = _stages()
    while i < len(lines):
        line = lines[i]
        if m := re.match(r"^  (\w+):\s*$", line):
            stage = m.group(1)
        if re.match(r"^\s+- src/fclens/", line):
            indent = line[: line.index("-")]
            while i < len(lines) and re.match(r"^\s+- src/fclens/", lines[i]):
                i += 1
            script = ROOT / stages[stage]["cmd"].split()[1]
            out += [f"{indent}- {d}" for d in expected_deps(script)]
            continue
        out.append(line)
        i += 1
    (ROOT / "dvc.yaml").write_text("\n".join(out))


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_deps()
    for f in sorted((ROOT / "stages").glob("[!_]*.py")):
        print(f.name, expected_deps(f))
