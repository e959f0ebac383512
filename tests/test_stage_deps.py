"""Each stage's dvc.yaml deps list exactly the fclens modules its script imports (transitively),
so an edit to one module reruns the stages that use it and no others."""

import ast
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

SRC = ROOT / "src" / "fclens"


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
                for alias in node.names:  # `from fclens import tables` imports a module
                    sub = f"{base}.{alias.name}"
                    out.add(sub if _module_file(sub).exists() else base)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "fclens"}
    return {m for m in out if m != "fclens"}


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
        todo += list(_imports(f, pkg))
        parts = m.split(".")
        for i in range(2, len(parts)):  # importing fclens.models.spec runs fclens/models/__init__
            todo.append(".".join(parts[:i]))
    return seen


def expected_deps(script: Path) -> set[str]:
    mods = module_closure(script) | module_closure(ROOT / "stages" / "_stage.py")
    files = {str(_module_file(m).relative_to(ROOT)) for m in mods}
    return files | {"src/fclens/__init__.py"} if files else files


def _stages() -> dict[str, dict]:
    return {k: v.get("do", v) for k, v in yaml.safe_load((ROOT / "dvc.yaml").read_text())
            ["stages"].items()}


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_deps_are_exactly_the_imported_modules(stage):
    s = _stages()[stage]
    script = ROOT / s["cmd"].split()[1]
    listed = {d for d in s["deps"] if isinstance(d, str) and d.startswith("src/fclens")}
    want = expected_deps(script)
    assert listed == want, (f"{stage}: missing {sorted(want - listed)}, "
                            f"not imported {sorted(listed - want)}")
    assert script.relative_to(ROOT).as_posix() in s["deps"] and "stages/_stage.py" in s["deps"]


if __name__ == "__main__":  # print each stage's deps, to paste into dvc.yaml
    for f in sorted((ROOT / "stages").glob("[!_]*.py")):
        print(f.name, sorted(expected_deps(f)))
