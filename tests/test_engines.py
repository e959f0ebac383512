"""CPU inference engines (params.yaml extract.engine) against torch, through _run()."""

import importlib.util
import logging
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import ROOT
from fclens.core.errors import FclensError
from fclens.core.params import Extract, ModelSpec
from fclens.core.tables import read_features
from fclens.extract import engines
from fclens.extract.loop import extract
from fclens.extract.parts import FeatureWriter
from fclens.models.inputs import uint8_batches
from fclens.models.registry import build_model


def _installed(engine: str) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in engines.NEEDS[engine])


ENGINES = [pytest.param(e, marks=pytest.mark.skipif(not _installed(e), reason=f"{e} absent"))
           for e in engines.NEEDS]


def _model():
    return build_model(ModelSpec(name="t", arch="cifar_resnet8"), seed=1)


def _images(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, n).astype(np.int16))


def _run(model, batches, cfg, writer=None):
    """extract() with the engine params ask for, as the backends call it."""
    return extract(model, batches, cfg, writer, engine=engines.for_config(cfg))


def _uneven_batches(imgs, labels):
    """Batches of 1, 8, 16, 5: the exporter must not fix the batch size to the first batch."""
    cuts = [0, 1, 9, 25, len(labels)]
    return [(torch.from_numpy(imgs[a:b]), torch.from_numpy(labels[a:b].astype(np.int64)))
            for a, b in zip(cuts, cuts[1:], strict=False)]


def _extract_table(tmp_path, engine, **kw):
    imgs, labels = _images()
    cfg = Extract(batch_size=8, engine=engine, **kw)
    f = tmp_path / f"{engine}_{kw.get('amp', 'none')}.parquet"
    with FeatureWriter(f, 64, 10, 16) as w:
        r = _run(_model(), _uneven_batches(imgs, labels), cfg, w)
    return r, read_features(f, 10, 64), pq.read_table(f, columns=["index", "logit_true"])


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_table_matches_torch(tmp_path, engine):
    ref_r, ref, ref_t = _extract_table(tmp_path, "torch")
    r, got, got_t = _extract_table(tmp_path, engine)
    assert (r.engine, ref_r.engine, r.n) == (engine, "torch", 30)
    # this CPU may have bf16 (OpenVINO's default there): 1e-4 holds only if f32 was forced
    assert r.engine_max_abs_err <= engines.F32_TOL and r.setup_seconds > 0
    np.testing.assert_array_equal(got_t["index"].to_numpy(), np.arange(30))
    np.testing.assert_array_equal(ref_t["index"].to_numpy(), np.arange(30))
    np.testing.assert_array_equal(got.labels, ref.labels)
    np.testing.assert_array_equal(got.preds, ref.preds)
    np.testing.assert_allclose(got.x, ref.x, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got_t["logit_true"].to_numpy(), ref_t["logit_true"].to_numpy(),
                               rtol=0, atol=1e-4)
    assert r.logit_max_abs_err < 1e-4 and r.n_correct == ref_r.n_correct


@pytest.mark.skipif(not _installed("openvino"), reason="openvino absent")
def test_openvino_bf16_passes_its_looser_check(tmp_path):
    _, ref, _ = _extract_table(tmp_path, "torch")
    r, got, _ = _extract_table(tmp_path, "openvino", amp="bf16")
    tol = engines.BF16_REL_TOL * np.abs(ref.x[:1]).max()  # the check runs on the first batch
    assert 0 <= r.engine_max_abs_err <= tol
    assert np.abs(got.x - ref.x).max() < 0.2 * np.abs(ref.x).max()  # bf16, not garbage


def test_onnxruntime_refuses_bf16():
    imgs, labels = _images(4)
    with pytest.raises(FclensError, match="extract.amp: 'bf16' with extract.engine 'onnxruntime'"):
        _run(_model(), uint8_batches(imgs, labels, 4),
                Extract(engine="onnxruntime", amp="bf16"))


@pytest.mark.skipif(not _installed("onnxruntime"), reason="onnxruntime absent")
def test_wrong_engine_output_is_caught_and_leaves_no_file(tmp_path, monkeypatch):
    real = engines.ENGINE_BUILDERS["onnxruntime"]

    def off_by_a_bit(*args):
        run = real(*args)
        return lambda x: (run(x)[0] + np.float32(3e-4), run(x)[1])

    monkeypatch.setitem(engines.ENGINE_BUILDERS, "onnxruntime", off_by_a_bit)
    imgs, labels = _images(12)
    with pytest.raises(FclensError, match=r"extract.engine: 'onnxruntime' features differ from "
                                          r"torch on the first batch by max abs 0.0003"):
        with FeatureWriter(tmp_path / "f.parquet", 64, 10, 8) as w:
            _run(_model(), uint8_batches(imgs, labels, 4),
                    Extract(engine="onnxruntime"), w)
    assert list(tmp_path.iterdir()) == []


def test_check_rejects_wrong_shape_and_nan():
    ref = np.ones((4, 3), np.float32)
    with pytest.raises(FclensError, match=r"shape \(4, 2\); torch gives \(4, 3\)"):
        engines.check_features("openvino", ref[:, :2], ref)
    with pytest.raises(FclensError, match="by max abs nan"):
        engines.check_features("openvino", ref * np.nan, ref)
    assert engines.check_features("openvino", ref + 2.0 ** -14, ref) == 2.0 ** -14  # < 1e-4


@pytest.mark.parametrize("engine,missing,pip", [
    ("openvino", "openvino", "pip install openvino==2026.4.1"),
    ("onnxruntime", "onnxruntime", "pip install onnxruntime==1.31.1"),
    ("openvino", "onnxscript", "pip install onnxscript==0.7.2"),
])
def test_missing_package_gives_the_pip_line(monkeypatch, engine, missing, pip):
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` now raises ImportError
    imgs, labels = _images(4)
    with pytest.raises(FclensError, match=rf"extract.engine: '{engine}' needs .*{missing}.*"
                                          rf"install with: {pip}"):
        _run(_model(), uint8_batches(imgs, labels, 4), Extract(engine=engine))


def test_pins_are_the_requirements():
    reqs = set((ROOT / "requirements.txt").read_text().split())
    assert set(engines.PINS.values()) <= reqs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runs_torch_whatever_the_engine(caplog):
    imgs, labels = _images(8)
    with caplog.at_level(logging.WARNING):
        r = _run(_model(), uint8_batches(imgs, labels, 4),
                    Extract(device="cuda", engine="openvino"))
    assert r.engine == "torch" and r.n == 8
    assert "extract.engine: 'openvino' ignored on cuda" in caplog.text


@pytest.mark.skipif(not _installed("onnxruntime"), reason="onnxruntime absent")
def test_engine_is_reused_until_the_weights_change(monkeypatch):
    builds = []
    real = engines.ENGINE_BUILDERS["onnxruntime"]
    monkeypatch.setitem(engines.ENGINE_BUILDERS, "onnxruntime",
                        lambda *a: builds.append(1) or real(*a))
    m, (imgs, labels) = _model(), _images(8)
    cfg = Extract(engine="onnxruntime")
    first = _run(m, uint8_batches(imgs, labels, 4), cfg)
    again = _run(m, uint8_batches(imgs, labels, 8), cfg)  # another batch size: same graph
    assert len(builds) == 1 and first.setup_seconds > 0 and again.setup_seconds == 0
    with torch.no_grad():
        m.get_classifier().bias.add_(1.0)  # in place, as an optimizer step would
    changed = _run(m, uint8_batches(imgs, labels, 4), cfg)
    assert len(builds) == 2 and changed.setup_seconds > 0 and changed.logit_max_abs_err < 1e-4
