"""The analysis stages, rerun from the same features as on a smaller CPU (one thread, AVX2
kernels only: ONEDNN_MAX_CPU_ISA), must write the same metrics byte for byte. The other half of
the forced rerun of test_pipeline_rerun.py."""

import pytest

from smoke_project import SMALLER_CPU, rerun_changes_no_metric

pytestmark = pytest.mark.e2e  # builds a DVC project and runs stages: not in `make test-fast`


def test_analyses_rerun_on_a_smaller_cpu_change_no_metric(tmp_path_factory):
    rerun_changes_no_metric(tmp_path_factory, analysis=True, **SMALLER_CPU)
