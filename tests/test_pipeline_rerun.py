"""Determinism: a forced rerun of the smoke project's stages (tests/smoke_project.py) changes no
science metric. Two files, so that both xdist workers share the rerun once the project is built:
this one reruns every stage but the analyses, as they ran; test_pipeline_rerun_analysis.py the
analyses, as on a smaller CPU. Together they rerun every stage of the DAG.
"""

import pytest

from smoke_project import rerun_changes_no_metric

pytestmark = pytest.mark.e2e  # builds a DVC project and runs stages: not in `make test-fast`


def test_forced_rerun_of_every_stage_but_the_analyses_changes_no_metric(tmp_path_factory):
    rerun_changes_no_metric(tmp_path_factory, analysis=False)
