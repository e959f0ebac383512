"""`dvc repro` itself SIGKILLed mid-extraction: its orphaned stage must write nothing, and the
next `dvc repro` resumes from the parts it left. Self-contained: a one-stage DVC project with the
real extract_activations cmd (no smoke project needed, so a worker runs it early)."""

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from smoke_project import BIN, sh, smoke_inputs, smoke_params

pytestmark = pytest.mark.e2e  # builds a DVC project and runs stages: not in `make test-fast`


PAUSE_AFTER_FIRST_PART = """\
def pause_after_first_part(script, *args):  # run `script args`, paused once a part is on disk
    import os, runpy, sys, time
    from pathlib import Path
    from fclens.extract import parts
    write = parts.FeatureParts.write
    def paused(self, *a, **k):  # the first part is on disk: say so, wait for the test's go
        write(self, *a, **k)
        ready, go = Path(os.environ["FCLENS_TEST_READY"]), Path(os.environ["FCLENS_TEST_GO"])
        if not ready.exists():
            ready.write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
    parts.FeatureParts.write = paused
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")
pause_after_first_part(*__import__("sys").argv[1:])
"""


def _substitute(obj, **names):
    if isinstance(obj, str):
        for k, v in names.items():
            obj = obj.replace("${" + k + "}", v)
        return obj
    if isinstance(obj, list):
        return [_substitute(v, **names) for v in obj]
    if isinstance(obj, dict):
        return {_substitute(k, **names): _substitute(v, **names) for k, v in obj.items()}
    return obj


@pytest.fixture(scope="module")
def extract_project(tmp_path_factory):
    """A DVC project of one stage, `extract`: dvc.yaml's extract_activations@cifar_resnet20 (its
    cmd behind a hook that pauses after the first part), on data that prepare_data wrote."""
    d = tmp_path_factory.mktemp("extract_project")
    for item in ("stages", "src"):
        shutil.copytree(ROOT / item, d / item)
    archive, folder = smoke_inputs(tmp_path_factory.mktemp("inputs"))
    (d / "params.yaml").write_text(yaml.safe_dump(smoke_params(archive, folder), sort_keys=False))
    sh("python stages/prepare_data.py --dataset cifar10 --out data/cifar10 "
       "--metrics metrics/data/cifar10.json", d)
    (d / "pause.py").write_text(PAUSE_AFTER_FIRST_PART)
    do = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["extract_activations"]["do"]
    stage = _substitute(do, key="cifar_resnet20", item="cifar10")
    assert stage["cmd"].startswith("python stages/extract_activations.py ")
    stage["cmd"] = stage["cmd"].replace("python ", "python pause.py ", 1)
    stage["deps"] = [p for p in stage["deps"] if p.startswith("data/")]  # the code: a copy
    (d / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"extract": stage}}, sort_keys=False))
    sh("dvc init -q --no-scm", d)
    return d


# dvc runs a stage's cmd with `$SHELL -c` (/bin/sh without $SHELL): bash execs a simple
# command (the stage's parent is dvc), dash forks it (its parent is the shell, which outlives dvc)
@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_sigkill_of_dvc_repro_mid_extraction_leaves_the_orphan_writing_nothing(
        extract_project, tmp_path, shell):
    if not Path(shell).exists():
        pytest.skip(f"no {shell}")
    repo = tmp_path / "repo"
    shutil.copytree(extract_project, repo)
    ready, go = tmp_path / "ready", tmp_path / "go"
    outs = [repo / "data/cifar_resnet20/features_train.parquet",
            repo / "data/cifar_resnet20/features_test.parquet",
            repo / "metrics/cifar_resnet20/extract.json",
            repo / "metrics/timing/extract_activations@cifar_resnet20.json"]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "SHELL": shell, "FCLENS_TEST_READY": str(ready), "FCLENS_TEST_GO": str(go)}
    dvc = subprocess.Popen(["dvc", "repro", "extract"], cwd=repo, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stage, out = None, None
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():  # the stage is under way: one part on disk, the rest to come
            assert dvc.poll() is None, f"dvc repro ended first:\n{dvc.communicate()[0][-3000:]}"
            assert time.monotonic() < deadline, "the stage did not start extracting"
            time.sleep(0.1)
        time.sleep(0.1)  # the pid is written
        stage = int(ready.read_text())
        dvc.kill()  # `kill -9 <pid of dvc repro>`: dvc alone; its shell and stage live on
        assert dvc.wait() == -signal.SIGKILL
        go.touch()
        out = dvc.communicate(timeout=300)[0]  # EOF: the orphaned stage (and shell) exited
    finally:
        go.touch()
        if dvc.poll() is None:
            dvc.kill()
        if out is None and stage is not None:  # the test failed with the stage still running
            with contextlib.suppress(ProcessLookupError):
                os.kill(stage, signal.SIGKILL)
    assert [f for f in outs if f.exists()] == []  # nothing written outside dvc.lock
    assert not (repo / "dvc.lock").exists()
    assert "not written: the process that started this stage" in out and "is gone" in out
    assert "Traceback" not in out
    parts = repo / "data/cifar_resnet20/.features_train.parquet.parts"
    assert list(parts.glob("rows-*.parquet"))  # the complete part stays, for the next run
    go.touch()  # the next `dvc repro` runs to the end, resuming from that part
    r = sh("dvc repro extract", repo, SHELL=shell, FCLENS_TEST_READY=str(ready),
           FCLENS_TEST_GO=str(go))
    assert "resuming at row" in r.stdout + r.stderr
    assert [f for f in outs if not f.exists()] == []
