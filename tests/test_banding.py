"""Weight banding scores, the GAP-vs-flatten experiment, the hyperplane picture and their report
sections: exact expectations on synthetic kernels, tiny models and tiny random images (CPU)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fclens.analysis import banding, hyperplanes
from fclens.core.errors import FclensError
from fclens.core.io import write_json
from fclens.core.params import BandingExperiment, Params
from fclens.core.tables import Head
from fclens.datasets.splits import FolderSplit, Split
from fclens.explain.pictures import draw_pictures
from fclens.models.cifar_resnet import CifarResNet
from fclens.report.doc import Inputs
from fclens.report.sections.banding import experiment_verdict, section_banding
from fclens.report.sections.hyperplanes import section_hyperplanes

RNG = np.random.default_rng(0)


def _rows(o: int, i: int, kh: int, kw: int) -> np.ndarray:
    """Kernels constant along each row (horizontal stripes), random per row: (O, I, kh, kw)."""
    return np.repeat(RNG.normal(size=(o, i, kh, 1)), kw, axis=3)


# ---- the score -------------------------------------------------------------------------------

@pytest.mark.parametrize("kh, kw", [(3, 3), (5, 5), (3, 5)])
def test_row_constant_kernels_are_horizontal(kh, kw):
    s = banding.banding_scores(_rows(6, 4, kh, kw))
    assert s["horizontal"] == pytest.approx(1, abs=1e-12)
    assert s["vertical"] == pytest.approx(0, abs=1e-12)
    assert s["n_kernels"] == 24


def test_column_constant_kernels_are_vertical():
    w = np.swapaxes(_rows(6, 4, 3, 3), 2, 3)  # constant along each column
    s = banding.banding_scores(w)
    assert s["horizontal"] == pytest.approx(0, abs=1e-12)
    assert s["vertical"] == pytest.approx(1, abs=1e-12)


@pytest.mark.parametrize("kh, kw", [(3, 3), (5, 5), (3, 5), (1, 3)])
def test_white_noise_scores_chance(kh, kw):
    s = banding.banding_scores(RNG.normal(size=(200, 100, kh, kw)))  # 20000 kernels
    ch, cv = (kh - 1) / (kh * kw - 1), (kw - 1) / (kh * kw - 1)
    assert (s["chance"], s["chance_vertical"]) == pytest.approx((ch, cv))
    # the score is a mean of Beta shares: std of the mean < 0.003 here
    assert s["horizontal"] == pytest.approx(ch, abs=0.01)
    assert s["vertical"] == pytest.approx(cv, abs=0.01)
    if (kh, kw) == (3, 3):
        assert ch == 0.25


def test_mean_and_scale_do_not_matter_and_constant_kernels_are_skipped():
    w = _rows(4, 3, 3, 3)
    shifted = 7.5 * w + 3.0  # a spatial offset (removed) and a scale (a ratio)
    assert banding.banding_scores(shifted)["horizontal"] == pytest.approx(1, abs=1e-12)
    mixed = np.concatenate([w, np.full((2, 3, 3, 3), 0.7), np.zeros((1, 3, 3, 3))])
    s = banding.banding_scores(mixed)
    assert s["n_kernels"] == 12 and s["horizontal"] == pytest.approx(1, abs=1e-12)
    flat = banding.banding_scores(np.full((2, 2, 3, 3), 0.3))
    assert flat["n_kernels"] == 0 and np.isnan(flat["horizontal"])


def test_each_kernel_counts_on_its_own():
    # one purely horizontal and one purely vertical kernel: each 1/2, not the pooled energy
    w = np.zeros((1, 2, 3, 3))
    w[0, 0] = [[1, 1, 1], [0, 0, 0], [-1, -1, -1]]
    w[0, 1] = 10 * np.array([[1, 0, -1]] * 3)
    s = banding.banding_scores(w)
    assert (s["horizontal"], s["vertical"]) == pytest.approx((0.5, 0.5))


@pytest.mark.parametrize("w, match", [
    (np.zeros((4, 3, 3)), "must be 4-D"),
    (np.zeros((4, 3, 1, 1)), "1x1 kernel has no spatial pattern"),
    (np.zeros((0, 3, 3, 3)), "hold no kernel"),
    (np.full((2, 2, 3, 3), np.nan), "NaN or inf"),
])
def test_bad_weights_are_refused(w, match):
    with pytest.raises(FclensError, match=match):
        banding.banding_scores(w)


# ---- models ----------------------------------------------------------------------------------

def test_depthwise_conv_is_scored_per_channel():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.Conv2d(8, 4, 1))
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(_rows(8, 1, 3, 3)))  # (8, 1, 3, 3)
    b = banding.model_banding(model)
    assert list(b["layers"]) == ["1"] and b["layers"]["1"]["n_kernels"] == 8
    assert b["last_layer_horizontal"] == pytest.approx(1)
    assert b["median_other_layers_horizontal"] is None  # no other spatial layer


def test_model_banding_lists_every_spatial_conv_of_a_cifar_resnet():
    torch.manual_seed(0)
    model = CifarResNet(8, num_classes=5, width=4).eval()
    b = banding.model_banding(model)
    want = ["conv1", *(f"layer{i}.0.conv{j}" for i in (1, 2, 3) for j in (1, 2))]
    assert sorted(b["layers"], key=lambda n: b["layers"][n]["index"]) == want
    assert b["n_layers"] == 7 and b["last_layer"] == "layer3.0.conv2"
    h = {n: s["horizontal"] for n, s in b["layers"].items()}
    assert b["last_layer_horizontal"] == h["layer3.0.conv2"]
    assert b["median_other_layers_horizontal"] == pytest.approx(
        np.median([h[n] for n in want[:-1]]))
    assert b["max_layer"] == max(h, key=h.get) and b["chance"] == 0.25
    # a random initialisation is white noise: every layer near chance
    assert all(abs(v - 0.25) < 0.15 for v in h.values())


def test_a_model_without_spatial_convs_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(FclensError, match="no Conv2d with a kernel larger than 1x1"):
        banding.model_banding(model)
    with pytest.raises(FclensError, match="no Conv2d"):
        banding.model_banding(nn.Linear(4, 2))


def test_draw_pictures_shows_the_most_banded_layer(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = CifarResNet(8, num_classes=5, width=4).eval()
    with torch.no_grad():  # make a middle layer the most banded, not the last one
        model.layer2[0].conv1.weight.copy_(torch.from_numpy(_rows(8, 4, 3, 3)))
    titles = []
    import fclens.explain.pictures

    real = fclens.explain.pictures.plot_tiles
    monkeypatch.setattr(fclens.explain.pictures, "plot_tiles",
                        lambda tiles, title, path: (titles.append(title),
                                                    real(tiles, title, path)))
    head = Head(RNG.normal(size=(5, 16)).astype(np.float32), np.zeros(5, np.float32),
                tuple("abcde"))
    b = draw_pictures(model, head, "tiny", 8, 0, tmp_path)
    assert b["max_layer"] == "layer2.0.conv1" and b["max_layer_horizontal"] == pytest.approx(1)
    assert "layer2.0.conv1" in titles[1] and "horizontal score 1.000" in titles[1]
    for f in ("first_layer_filters", "weight_banding", "banding_by_depth", "fc_matrix"):
        assert (tmp_path / f"{f}.png").stat().st_size > 1000


# ---- the GAP vs flatten experiment -----------------------------------------------------------

def _split(n: int, seed: int, size: int = 8) -> Split:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return Split(images, (np.arange(n) % 3).astype(np.int16), ("a", "b", "c"))


CFG = BandingExperiment(epochs=2, n_train=24, batch_size=8, lr=0.01, seeds=[0, 1])


def test_balanced_subset_takes_classes_in_turn():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])  # sorted by class, like the JPEG export
    idx = banding.balanced_subset(labels, 6)
    assert idx.tolist() == [0, 3, 5, 1, 4, 6]
    assert banding.balanced_subset(labels, 9).tolist()[:6] == idx.tolist()


def test_experiment_runs_and_is_deterministic_for_a_seed():
    train, test = _split(30, 0), _split(12, 1)
    a = banding.banding_experiment(train, test, CFG)
    b = banding.banding_experiment(train, test, CFG)
    assert a == b
    assert a["epochs"] == 2 and a["n_train"] == 24 and a["chance"] == 0.25
    assert len(a["gap_last_layer_horizontal_by_seed"]) == 2
    assert a["gap_last_layer_horizontal"] == pytest.approx(
        np.mean(a["gap_last_layer_horizontal_by_seed"]), abs=1e-4)
    assert a["claim_holds"] == all(g > f for g, f in zip(a["gap_last_layer_horizontal_by_seed"],
                                                         a["flatten_last_layer_horizontal_by_seed"]))
    assert all(0 <= v <= 1 for v in a["test_acc_flatten_by_seed"])
    c = banding.banding_experiment(train, test, CFG.model_copy(update={"seeds": [2]}))
    assert c["gap_last_layer_horizontal_by_seed"] != a["gap_last_layer_horizontal_by_seed"][:1]


def test_gap_and_flatten_share_the_conv_initialisation():
    x, y = _split(24, 0).images, np.arange(24) % 3
    # epochs=0 (untrained), which params.yaml refuses: built without validation
    cfg0 = BandingExperiment.model_construct(epochs=0, n_train=24, batch_size=8, lr=0.01)
    gap, _ = banding.train_small_cnn(x, y, 3, "gap", cfg0, 5)
    flat, _ = banding.train_small_cnn(x, y, 3, "flatten", cfg0, 5)
    assert torch.equal(gap.conv3.weight, flat.conv3.weight)
    assert gap.fc.in_features == 32 and flat.fc.in_features == 32 * 2 * 2


def test_experiment_refuses_bad_input():
    train, test = _split(30, 0), _split(12, 1)
    with pytest.raises(FclensError, match="n_train: 100 exceeds the 30"):
        banding.banding_experiment(train, test, BandingExperiment(epochs=1, n_train=100,
                                                               batch_size=8, lr=0.01, seeds=[0]))
    folder = FolderSplit("/x", np.array(["a.jpg"]), np.zeros(1, np.int16), ("a",))
    with pytest.raises(FclensError, match="needs decoded images"):
        banding.banding_experiment(folder, test, CFG)
    with pytest.raises(FclensError, match="divisible by 4"):
        banding.SmallCnn("gap", (10, 10), 3)


def test_params_sections_have_defaults_and_refuse_repeated_seeds():
    assert Params.model_fields["banding_experiment"].default.seeds == [0, 1, 2]
    assert Params.model_fields["hyperplanes"].default.steps >= 7
    from pydantic import ValidationError

    from fclens.core.params import BandingExperiment

    with pytest.raises(ValidationError, match="lists a seed twice"):
        BandingExperiment(seeds=[1, 1])


# ---- hyperplanes -----------------------------------------------------------------------------

def test_hyperplanes_deterministic_with_8_snapshots():
    a = hyperplanes.hyperplanes(60, 300, 0.02, 3, grid=20)
    b = hyperplanes.hyperplanes(60, 300, 0.02, 3, grid=20)
    assert a.metrics == b.metrics and np.array_equal(a.regions, b.regions)
    assert len(a.snapshots) == 8 and a.regions.shape == (8, 20, 20)
    its = a.metrics["iterations"]
    assert its[0] == 0 and its[-1] == 300 and its == sorted(set(its))
    assert a.snapshots[0].w1.shape == (20, 2)
    for sa, sb in zip(a.snapshots, b.snapshots):
        assert np.array_equal(sa.w1, sb.w1) and np.array_equal(sa.b1, sb.b1)
    assert a.metrics["final_train_acc"] > 0.8  # two moons: learnable by 20 ReLU units
    c = hyperplanes.hyperplanes(60, 300, 0.02, 4, grid=20)
    assert not np.array_equal(c.snapshots[-1].w1, a.snapshots[-1].w1)


def test_hyperplane_gradients_match_autograd():
    x, y = hyperplanes.two_moons(30, 0)
    rng = np.random.default_rng(1)
    params = [rng.normal(size=s) for s in ((20, 2), (20,), (2, 20), (2,))]
    logits, grads = hyperplanes.mlp_grads(params, x, y)
    t = [torch.tensor(p, requires_grad=True) for p in params]
    out = torch.relu(torch.from_numpy(x) @ t[0].T + t[1]) @ t[2].T + t[3]
    torch.nn.functional.cross_entropy(out, torch.from_numpy(y)).backward()
    np.testing.assert_allclose(logits, out.detach().numpy(), rtol=1e-12)
    for g, p in zip(grads, t):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_snapshot_iterations_and_bad_hyperplane_params():
    assert hyperplanes.snapshot_iterations(7).tolist() == list(range(8))
    assert len(set(hyperplanes.snapshot_iterations(20).tolist())) == 8
    with pytest.raises(FclensError, match="hyperplanes.steps: 6"):
        hyperplanes.snapshot_iterations(6)
    with pytest.raises(FclensError, match="hyperplanes.n_points"):
        hyperplanes.two_moons(3, 0)
    with pytest.raises(FclensError, match="hyperplanes.lr"):
        hyperplanes.train_mlp(*hyperplanes.two_moons(10, 0), 10, float("nan"), 0)


# ---- report ----------------------------------------------------------------------------------

def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)


def _experiment(gap: list[float], flat: list[float]) -> dict:
    return {"seeds": [0, 1, 2][:len(gap)], "epochs": 4, "n_train": 100, "n_test": 50,
            "chance": 0.25, "gap_last_layer_horizontal": float(np.mean(gap)),
            "flatten_last_layer_horizontal": float(np.mean(flat)),
            "gap_last_layer_horizontal_by_seed": gap,
            "flatten_last_layer_horizontal_by_seed": flat,
            "test_acc_gap": 0.5, "test_acc_flatten": 0.6, "test_acc_gap_by_seed": [0.5] * len(gap),
            "test_acc_flatten_by_seed": [0.6] * len(gap),
            "claim_holds": all(g > f for g, f in zip(gap, flat))}


def make_banding_tree(root: Path, models: list[str]) -> None:
    """Every file the banding and hyperplane sections read (tests/test_report.py uses it too)."""
    torch.manual_seed(0)
    b = banding.model_banding(CifarResNet(8, width=4))
    for m in models:
        write_json(root / f"metrics/{m}/banding.json", b, digits=5)
        _png(root / f"plots/pictures/{m}/banding_by_depth.png")
    write_json(root / "metrics/banding_experiment.json",
               _experiment([0.4123, 0.3912, 0.405], [0.33, 0.34, 0.35]))
    write_json(root / "metrics/hyperplanes.json", hyperplanes.hyperplanes(20, 10, 0.01, 0,
                                                                          grid=4).metrics)
    _png(root / "plots/pictures/hyperplanes.png")


def test_report_sections(tmp_path):
    make_banding_tree(tmp_path, ["net_a", "net_b"])
    inp = Inputs(tmp_path, ["net_a", "net_b"], {"net_a": "cifar_resnet8", "net_b": "cifar_resnet8"},
                 {})
    md = "\n".join(section_banding(inp))
    assert "Distill's claim holds here" in md and "seed 1: GAP 0.3912 vs flatten 0.3400" in md
    assert "lower test accuracy" in md  # GAP 0.5 < flatten 0.6 in _experiment
    assert md.count("banding_by_depth.png") == 2 and "`layer3.0.conv2`" in md
    assert "hyperplanes.png" in "\n".join(section_hyperplanes(inp))
    no = experiment_verdict(_experiment([0.4, 0.3], [0.35, 0.31]))
    assert "does not hold here" in no and "seed 1: GAP 0.3000 vs flatten 0.3100" in no
    (tmp_path / "metrics/banding_experiment.json").unlink()
    with pytest.raises(FclensError, match="metrics/banding_experiment.json: missing"):
        section_banding(inp)
    (tmp_path / "plots/pictures/hyperplanes.png").unlink()
    with pytest.raises(FclensError, match="hyperplanes.png: missing"):
        section_hyperplanes(inp)
