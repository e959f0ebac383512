"""Single-sample activations on tiny random models: the hooked stages are the known layer
outputs, the last one pools into the FC features, marks are the class's sets, the random
control is sized and seeded, token models are refused, and the stage runs end to end. CPU."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from conftest import ROOT
from fclens.analysis.trees import build_trees, chain_node, chain_rank, tree_frames
from fclens.core import tables
from fclens.core.errors import FclensError
from fclens.core.params import ModelSpec
from fclens.core.tables import Head, Influential
from fclens.datasets.splits import Split, save_split
from fclens.explain import activations as act
from fclens.models.heads import linear_head
from fclens.models.registry import build_model
from fclens.plots.activations import file_stems, mosaic


def _x(n=2, size=32, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _cifar(num_classes=10):
    return build_model(ModelSpec(name="t", arch="cifar_resnet8", num_classes=num_classes), seed=1)


def _nodes(w, min_size=4):
    forest = build_trees(w, "chain", min_size)
    return tree_frames(forest, w, tuple(f"c{i}" for i in range(len(w))), "chain")[0]


def _no_hooks(model):
    return all(not m._forward_hooks for m in model.modules())


def test_cifar_stages_are_the_layer_outputs_and_the_last_pools_into_the_features():
    model, x = _cifar(), _x()
    st = act.stage_maps(model, x, "t")
    assert st.names == ["layer1", "layer2", "layer3"] and _no_hooks(model)
    with torch.inference_mode():
        h1 = model.layer1(F.relu(model.bn1(model.conv1(x))))
        h2 = model.layer2(h1)
        h3 = model.layer3(h2)
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
    for got, want, shape in zip(st.maps, (h1, h2, h3), ((16, 32, 32), (32, 16, 16), (64, 8, 8))):
        assert got.shape == (2, *shape)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st.last.mean((2, 3)), pre.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st.pooled, pre.numpy(), rtol=1e-6, atol=1e-7)
    assert st.pooling_max_abs_err < 1e-5 and (st.last > 0).any()


@pytest.mark.parametrize("arch,names", [
    ("tf_efficientnet_lite0", ["blocks.5", "blocks.6", "conv_head"]),
    ("resnet18", ["layer3", "layer4", "features"]),  # any timm model: its feature_info
])
def test_timm_stages_are_the_block_outputs_and_the_last_is_forward_features(arch, names):
    torch.manual_seed(0)
    model, x = timm.create_model(arch, num_classes=5).eval(), _x(2, 64)
    st = act.stage_maps(model, x, arch)
    assert st.names == names and _no_hooks(model)
    mods = dict(model.named_modules())
    seen = {}
    handles = [mods[n].register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o))
               for n in names[:-1]]
    with torch.inference_mode():
        fmap = model.forward_features(x)
        pre = model.forward_head(fmap, pre_logits=True)
    for h in handles:
        h.remove()
    for got, n in zip(st.maps[:-1], names[:-1]):
        np.testing.assert_allclose(got, seen[n].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st.last, fmap.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st.last.mean((2, 3)), pre.numpy(), rtol=1e-4, atol=1e-5)
    assert st.last.shape[1] == linear_head(model).weight.shape[1]


def test_hooks_are_removed_when_the_forward_raises():
    model = _cifar()

    def boom(*_):
        raise RuntimeError("boom")

    h = model.layer3.register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        act.stage_maps(model, _x(), "t")
    h.remove()
    assert _no_hooks(model)


class _Tokens(nn.Module):  # a ViT-like model: forward_features gives (B, N, C)
    def forward_features(self, x):
        return x.flatten(2).transpose(1, 2)

    def forward_head(self, x, pre_logits=False):
        return x.mean(1)


def test_models_without_spatial_stages_are_refused_naming_the_key_and_model():
    with pytest.raises(FclensError, match=r"params\.yaml activations\.models: vit_tiny .*NCHW"):
        act.stage_maps(_Tokens(), _x(1), "vit_tiny")


def test_marks_are_the_terminal_and_influential_indices():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 40)).astype(np.float32)
    nodes, infl = _nodes(w), np.array([[1, 2], [3, 4], [5, 6]])
    for c in range(3):
        marks = act.class_marks(nodes, c, infl)
        assert list(marks) == ["terminal+", "influential"]
        np.testing.assert_array_equal(marks["terminal+"], chain_node(nodes, c, "+"))
        # an independent reading: the '+' chain terminals are the class's top weights
        k = len(marks["terminal+"])
        assert 0 < k < 40
        assert set(marks["terminal+"]) == set(chain_rank(w)[c, :k])
        np.testing.assert_array_equal(marks["influential"], infl[c])
    assert list(act.class_marks(nodes, 1, None)) == ["terminal+"]


def test_grids_show_marked_channels_first_then_the_most_active():
    maps = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((10, 2, 2))  # mean = index
    order = act.pick_channels(maps, 6, [np.array([1, 3]), np.array([3, 0])])
    np.testing.assert_array_equal(order, [3, 1, 0, 9, 8, 7])
    np.testing.assert_array_equal(act.pick_channels(maps, 4), [9, 8, 7, 6])
    np.testing.assert_array_equal(act.pick_channels(maps, 2, [np.array([0, 1, 2])]), [2, 1])


def test_random_control_is_sized_seeded_and_matches_a_set_with_nothing_special():
    r = act.random_sets(50, 7, seed=3)
    assert r.shape == (act.N_RANDOM, 7)
    assert all(len(set(row)) == 7 for row in r) and r.min() >= 0 and r.max() < 50
    np.testing.assert_array_equal(r, act.random_sets(50, 7, seed=3))
    assert not np.array_equal(r, act.random_sets(50, 7, seed=4))
    # flat features: every set of k channels carries k/D, exactly as the random sets do
    out = act.set_numbers(np.ones(50), np.ones(50), np.arange(7), seed=0)
    assert out["size"] == 7
    for k in ("activation_share", "logit_share"):
        assert out[k] == pytest.approx(7 / 50) and out[f"{k}_random"] == pytest.approx(7 / 50)
        assert out[f"{k}_p"] == 1.0  # every random set ties: no evidence
    # a set holding all the activation: share 1, far above random, smallest p
    f = np.zeros(50)
    f[[4, 9]] = 2.0
    w = np.where(np.arange(50) == 4, -1.0, 1.0)  # channel 4 pushes the logit down
    out = act.set_numbers(f, w, np.array([4, 9]), seed=0)
    assert out["activation_share"] == 1.0 and out["activation_share_p"] == 1 / (1 + act.N_RANDOM)
    assert out["activation_share_random"] == 2 / 50  # exact, whatever the features
    # ... and it is what random sets carry on average, on any non-negative features
    v = np.random.default_rng(1).exponential(size=50) ** 3
    draws = act._shares(v, act.random_sets(50, 7, seed=5, n=20000))
    assert draws.mean() == pytest.approx(7 / 50, abs=4 * draws.std() / np.sqrt(len(draws)))
    assert out["logit_share"] == 1.0  # only channel 9's positive contribution counts


def test_single_sample_activations_metrics_and_channels():
    model, x = _cifar(3), _x(3)
    head = linear_head(model)
    w = head.weight.detach().numpy()
    nodes, infl = _nodes(w), np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    cls = np.array([0, 2, 2])
    r = act.single_sample_activations(model, x, w, cls, nodes, infl, 12, ["a", "b", "c"], 0, "t")
    m = r.metrics
    assert m["last_stage"] == "layer3" and m["n_images"] == 3 and list(m["images"]) == ["a",
                                                                                         "b", "c"]
    assert m["stages"]["layer2"]["shape"] == [32, 16, 16]
    assert 0 < m["stages"]["layer3"]["zero_fraction"] < 1
    for i, c in enumerate(cls):
        marked = set(chain_node(nodes, int(c), "+")) | set(infl[c])
        last = r.channels[i][-1]
        assert len(last) == 12 and set(last[:len(marked)]) == marked
        assert m["images"]["abc"[i]]["influential"]["size"] == 3
        f = r.stages.pooled[i]
        want = f[infl[c]].sum() / f.sum()
        assert m["images"]["abc"[i]]["influential"]["activation_share"] == pytest.approx(want)
        for s in range(2):  # earlier stages: the most active by mean
            means = r.stages.maps[s][i].mean((1, 2))
            np.testing.assert_array_equal(r.channels[i][s], np.argsort(-means,
                                                                       kind="stable")[:12])
    assert m["sets"]["terminal+"]["n_images"] == 3
    with pytest.raises(FclensError, match="activations.models: t: 64 pooled features"):
        act.single_sample_activations(model, x, w[:, :10], cls, nodes, None, 4, ["a"] * 3, 0,
                                      "t")


def test_mosaic_and_file_stems():
    m = mosaic(np.ones((5, 2, 3)), cols=2)
    assert m.shape == (3 * 3, 2 * 4) and np.isnan(m[2]).all() and np.isnan(m[:, 3]).all()
    assert np.isnan(m[6:, 4:]).all() and (m[6:8, :3] == 1).all()  # 5 tiles: the 6th cell empty
    assert file_stems(["test_3", "a b/c", "a b/c", "..", "ü"]) == ["test_3", "a_b_c", "a_b_c_2",
                                                                   "image", "image_2"]


def _project(tmp_path):
    """A tiny dataset-model project: params.yaml (the real one, a random cifar_resnet8 added),
    a 3-class test split, its features, FC weights, trees and Algorithm-1 indices."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["models"]["tiny"] = {"arch": "cifar_resnet8", "weights": "random", "num_classes": 3}
    params["explain"].update(classes=[0, 2], n_correct=1, n_wrong=1)
    params["activations"].update(max_channels=8, models=["tiny"])
    params["datasets"]["ds"] = {"archive": "ds.tar.gz", "checksum": "sha256:" + "0" * 64}
    params["feature_models"]["tiny"] = "ds"
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"activations": {"cmd": "python stages/activations.py",
                                    "deps": ["data/ds", "data/tiny"]}}}))
    params["extract"]["device"] = "cpu"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    model = build_model(ModelSpec(name="tiny", arch="cifar_resnet8", num_classes=3),
                        params["seed"])
    rng = np.random.default_rng(0)
    n, d = 12, 64
    labels = np.arange(n) % 3
    preds = np.where(np.arange(n) < 6, labels, (labels + 1) % 3)  # the first 6 correct
    data = tmp_path / "data" / "tiny"
    data.mkdir(parents=True)
    (data.parent / "ds").mkdir()
    images = rng.integers(0, 256, (n, 32, 32, 3), np.uint8)
    save_split(data.parent / "ds" / "test.npz",
               Split(images, labels.astype(np.int16), ("a", "b", "c")))
    t = tables.feature_rows(tables.FEATURES.schema(dim=d), np.arange(n), labels, preds,
                            np.zeros(n), rng.random((n, d)).astype(np.float32))
    tables.write(data / "features_test.parquet", t, tables.FEATURES, 3)
    head = linear_head(model)
    w = head.weight.detach().numpy()
    tables.write_fc_weights(data / "fc_weights.parquet",
                            Head(w, head.bias.detach().numpy(), ("a", "b", "c")))
    forest = build_trees(w, "chain", 4)
    nodes, terms, _ = tree_frames(forest, w, ("a", "b", "c"), "chain")
    tables.write_trees(data, nodes, terms, 3)
    tables.write_influential(data / "influential.parquet",
                             Influential(np.array([[1, 2], [3, 4], [5, 6]]), np.ones((3, 2))))
    return data


def test_stage_end_to_end(tmp_path):
    data = _project(tmp_path)
    out, met, tim = tmp_path / "plots", tmp_path / "m.json", tmp_path / "t.json"
    cmd = [sys.executable, str(ROOT / "stages" / "activations.py"), "--model", "tiny",
           "--weights", str(data / "fc_weights.parquet"), "--trees",
           str(data / "tree_nodes.parquet"), "--out", str(out), "--metrics", str(met),
           "--timing", str(tim)]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    # per class 0 and 2: the first correct row, then the first wrong one
    names = ["test_0", "test_6", "test_2", "test_8"]
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.png" for n in names] +
                                                           ["overview.png"])
    m = json.loads(met.read_text())
    assert list(m["images"]) == sorted(names) and m["sets"]["influential"]["size"] == 2
    assert m["images"]["test_6"]["class"] == 1  # label 0 predicted 1: the prediction's sets
    assert m["stages"]["layer3"]["shape"] == [64, 8, 8] and m["pooling_max_abs_err"] < 1e-4
    assert json.loads(tim.read_text())["seconds"] > 0
    df = pd.read_parquet(data / "tree_nodes.parquet")
    assert m["images"]["test_0"]["terminal+"]["size"] == len(chain_node(df, 0, "+"))
