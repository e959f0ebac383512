"""Adversarial samples through the last layer: PGD's constraints, its equality with captum's PGD,
the exact margin decomposition on a linear toy, k90 by hand, the controls, the stronger attack."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from fclens.core.errors import FclensError
from fclens.core.params import Adversarial, ModelSpec
from fclens.core.tables import Head
from fclens.explain import adversarial as adv
from fclens.explain.adversarial_study import study
from fclens.explain.pixels import HeadNet
from fclens.models.registry import build_model


class TwoChannelModel(nn.Module):
    """A linear '2-feature' model: h = the mean of the red and of the green channel; its head
    is a plain matrix, so every logit is linear in the pixels."""

    pretrained_cfg = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2]  # (B, 2, H, W)

    def forward_head(self, f: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return f.mean((2, 3))  # (B, 2)


W_TOY = np.array([[2.0, -1.0], [-1.0, 2.0]], np.float32)  # class 0 likes red, 1 likes green
B_TOY = np.zeros(2, np.float32)


def toy_images(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 4, 4, generator=g)
    y = torch.arange(n) % 2
    x[y == 0, 0] = x[y == 0, 0] * 0.1 + 0.55  # class 0: red ~0.6, green ~0.5
    x[y == 0, 1] = x[y == 0, 1] * 0.1 + 0.45
    x[y == 1, 1] = x[y == 1, 1] * 0.1 + 0.55
    x[y == 1, 0] = x[y == 1, 0] * 0.1 + 0.45
    return x, y


def test_margin_terms_sum_to_the_logit_change_on_a_linear_toy():
    net = HeadNet(TwoChannelModel(), W_TOY, B_TOY + np.array([0.05, -0.05], np.float32))
    x, y = toy_images()
    assert (net(x).argmax(1) == y).all()
    xa, broken = adv.pgd(net, x, y, eps=0.2, steps=10, step_size=0.05, seed=0)
    assert broken.all()
    with torch.no_grad():
        h, ha, la, lc = net.features(x), net.features(xa), net(xa), net(x)
    t = la.argmax(1)
    c = adv.margin_terms(W_TOY, h.numpy(), ha.numpy(), y.numpy(), t.numpy())
    r = torch.arange(len(y))
    change = (la[r, y] - la[r, t]) - (lc[r, y] - lc[r, t])  # the biases cancel
    np.testing.assert_allclose(c.sum(1), change.numpy(), atol=1e-5)
    assert (change < 0).all()  # every broken image's margin fell


def test_k90_by_hand():
    c = np.array([[-3.0, -1.0],  # total -4, 90% = -3.6: both terms
                  [1.0, -5.0],  # total -4: -5 alone reaches it
                  [-0.2, -5.0],  # total -5.2, 90% = -4.68: -5 alone
                  [2.0, 1.0]])  # the margin rose: no reach, D
    np.testing.assert_array_equal(adv.k_reach(c), [2, 1, 1, 2])
    np.testing.assert_array_equal(adv.k_reach(np.array([[-1.0, -1.0, -1.0, -1.0]])), [4])
    np.testing.assert_array_equal(adv.k_reach(np.array([[-9.0, -0.5, -0.5]]), 0.9), [1])


def test_shares_and_their_exact_random_control():
    c = np.array([[-2.0, -1.0, -1.0, 0.0]])
    assert adv.share(c, np.array([[True, False, False, False]]))[0] == pytest.approx(0.5)
    # the control: a uniformly random set of size s carries s / D of the total in expectation
    rng = np.random.default_rng(0)
    c = rng.standard_t(2, size=(3, 10))
    draws = np.stack([adv.share(c, np.isin(np.arange(10), rng.choice(10, 3, replace=False))[None]
                                .repeat(3, 0)) for _ in range(40000)])
    np.testing.assert_allclose(draws.mean(0), 0.3, atol=0.05 * np.abs(draws).std(0).max())
    sets = np.zeros((2, 10), bool)
    sets[0, :3] = sets[1, :7] = True
    m = adv.margin_stats(np.eye(2, 10), np.zeros((2, 10)), np.linspace(1, 2, 20).reshape(2, 10),
                         np.array([0, 1]),
                         np.array([1, 0]), sets, sets, None)
    np.testing.assert_allclose(m.share_alg1_random, [0.3, 0.7])


def test_random_hit_chance_is_exact():
    # a set of 2 of 6 features meets 3 given ones unless both land in the other 3
    p = adv.p_random_hit(np.array([3]), np.array([2]), 6)[0]
    assert p == pytest.approx(1 - math.comb(3, 2) / math.comb(6, 2))
    rng = np.random.default_rng(0)
    draws = np.array([np.isin(rng.choice(6, 2, replace=False), [0, 1, 2]).any()
                      for _ in range(20000)])
    assert draws.mean() == pytest.approx(p, abs=0.01)
    c = np.array([[-3.0, 0.5, -1.0, 0.0]])
    hit = adv.hits_top(c, np.array([2]), np.array([[False, False, True, False]]))
    miss = adv.hits_top(c, np.array([1]), np.array([[False, False, True, False]]))
    assert hit[0] and not miss[0]


@pytest.fixture(scope="module")
def resnet8():
    return HeadNet(build_model(ModelSpec(name="r8", arch="cifar_resnet8"), 0),
                       *_head_of(build_model(ModelSpec(name="r8", arch="cifar_resnet8"), 0)))


def _head_of(model):
    clf = model.get_classifier()
    return clf.weight.detach().numpy(), clf.bias.detach().numpy()


def test_pgd_stays_in_the_ball_and_the_pixel_range(resnet8):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(12, 3, 32, 32, generator=g)
    x[:4] = x[:4].round()  # pixels at 0 and 1: the clip must hold at the bounds
    y = resnet8(x).argmax(1)
    for eps in (0.5 / 255, 8 / 255, 0.5):
        for early in (True, False):
            xa, broken = adv.pgd(resnet8, x, y, eps, 5, 2.5 * eps / 5, seed=1, early_stop=early)
            assert ((xa - x).abs() <= eps + 1e-6).all()
            assert (xa >= 0).all() and (xa <= 1).all()
            with torch.no_grad():  # the flag is the returned image's own verdict
                np.testing.assert_array_equal(broken.numpy(), (resnet8(xa).argmax(1) != y).numpy())


def test_pgd_is_captum_pgd_without_early_stop():
    from captum.robust import PGD

    # captum moves only pixels whose |gradient| exceeds 1e-6: on the linear toy every red and
    # green pixel's gradient is far above it and every blue one is exactly 0, so the two
    # updates are the same formula
    net = HeadNet(TwoChannelModel(), W_TOY, B_TOY)
    x, y = toy_images()
    eps = 8 / 255
    ours, _ = adv.pgd(net, x, y, eps, 7, 2.5 * eps / 7, seed=0, random_start=False,
                      early_stop=False)
    # captum's default loss is -log(output) (for probabilities); ours is the logits' CE
    loss = nn.CrossEntropyLoss(reduction="none")  # per image: captum sums them
    theirs = PGD(net, loss_func=loss, lower_bound=0, upper_bound=1).perturb(
        x, radius=eps, step_size=2.5 * eps / 7, step_num=7, target=y, random_start=False)
    assert (ours - x).abs().max() > eps / 2  # it moved
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_early_stop_keeps_the_first_broken_iterate():
    """Each image's early-stopped result is the full trajectory's iterate at the first step
    where that image is misclassified (no random start: the trajectories are the same)."""
    net = HeadNet(TwoChannelModel(), W_TOY, B_TOY)
    x, y = toy_images()
    x[:, :2] += torch.linspace(0, 0.04, len(x))[:, None, None, None] * (
        torch.nn.functional.one_hot(y, 2).float()[:, :, None, None])  # margins grow with i
    eps, steps, size = 0.3, 40, 0.005
    early, b_early = adv.pgd(net, x, y, eps, steps, size, 0, random_start=False)
    assert b_early.all()
    first = {}
    for n in range(steps + 1):
        xa, broken = adv.pgd(net, x, y, eps, n, size, 0, random_start=False, early_stop=False)
        for i in np.flatnonzero(broken.numpy()):
            first.setdefault(int(i), xa[i])
    assert len(first) == len(x)
    steps_used = set()
    for i, xa_i in first.items():
        torch.testing.assert_close(early[i], xa_i, atol=1e-7, rtol=0)
        steps_used.add(round(float((xa_i - x[i]).abs().max()) / size))
    assert len(steps_used) > 1  # images cross at different steps: the test can tell them apart


def test_strong_attack_stays_in_the_ball(resnet8):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 3, 32, 32, generator=g)
    y = resnet8(x).argmax(1)
    xa, broken = adv.strong_attack(resnet8, x, y, 1 / 255, steps=10)
    assert ((xa - x).abs() <= 1 / 255 + 1e-6).all() and (xa >= 0).all() and (xa <= 1).all()
    with torch.no_grad():
        assert ((resnet8(xa).argmax(1) != y) >= broken).all()


@pytest.mark.parametrize("eps", [[0.0], [-1.0], [300.0], [float("nan")]])
def test_bad_radius_names_the_key(eps):
    with pytest.raises(FclensError, match=r"params.yaml adversarial.eps.*\(0, 255\]"):
        adv.check_eps(eps)


def test_study_on_the_linear_toy_counts_every_image():
    net = TwoChannelModel()
    x, y = toy_images(12)
    y = y.numpy()
    y[0] = 1  # a clean mistake: wrong at every radius, never attacked
    head = Head(W_TOY, B_TOY, ("red", "green"))
    s = Adversarial(models=["toy"], eps=[1.0, 60.0], steps=10, strong_eps=60.0, strong_steps=5,
                    batch_size=5, n_examples=2)
    sets = np.array([[True, False], [False, True]])
    r = study(net, head, x, y, sets, sets, {"elastic_net": (W_TOY * sets, B_TOY)}, s, 0)
    m = r.metrics
    assert m["clean_acc"] == pytest.approx(11 / 12)
    assert m["acc"][0] <= 11 / 12 and m["acc"][1] == 0.0  # 60/255 flips every toy image
    assert m["n_broken"][1] == 11
    assert m["acc_strong"] <= m["acc"][1]
    assert m["sparse_heads"]["elastic_net"]["nec"] == 1.0
    assert len(m["sparse_heads"]["elastic_net"]["transfer_rate"]) == 2
    assert r.examples["clean"].shape[1:] == (4, 4, 3)
    # by hand, D = 2, each class's set its own feature: a broken image's terms are
    # c = 3 (dh_y, -dh_t) with red and green moved by about the same amount, so each carries
    # about half, both are needed for 90%, and the exact controls are 1/2 and k90 / 2 = 1
    assert m["k90_median"][1] == 2.0
    assert m["margin_share_algorithm1"][1] == pytest.approx(0.5, abs=0.2)
    assert m["margin_share_algorithm1_random"] == [0.5, 0.5] or m["n_broken"][0] == 0
    assert m["terminal_in_k90_rate"][1] == 1.0 and m["terminal_in_k90_rate_random"][1] == 1.0
    assert m["margin_share_elastic_net"][1] == m["margin_share_algorithm1"][1]  # same sets


def test_study_is_deterministic():
    from fclens.core.io import write_json

    x, y = toy_images(12)
    head = Head(W_TOY, B_TOY, ("red", "green"))
    s = Adversarial(models=["toy"], eps=[1.0, 20.0], steps=6, strong_eps=20.0, strong_steps=5,
                    batch_size=5, n_examples=2)
    sets = np.array([[True, False], [False, True]])
    texts = []
    for k in range(2):
        r = study(TwoChannelModel(), head, x, y.numpy(), sets, sets,
                  {"algorithm1": (W_TOY, B_TOY)}, s, 3)
        write_json(f"/tmp/fclens_adv_{k}.json", r.metrics, digits=4)
        texts.append(open(f"/tmp/fclens_adv_{k}.json").read())
    assert texts[0] == texts[1]


def test_report_section_reads_the_study_and_its_figures(tmp_path):
    from fclens.core.io import write_json
    from fclens.plots import robustness
    from fclens.report.doc import Inputs
    from fclens.report.sections.adversarial import section_adversarial

    x, y = toy_images(12)
    head = Head(W_TOY, B_TOY, ("red", "green"))
    s = Adversarial(models=["toy"], eps=[1.0, 60.0], steps=10, strong_eps=60.0, strong_steps=5,
                    batch_size=5, n_examples=2)
    sets = np.array([[True, False], [False, True]])
    r = study(TwoChannelModel(), head, x, y.numpy(), sets, sets, {"algorithm1": (W_TOY, B_TOY)},
              s, 0)
    write_json(tmp_path / "metrics/toy/adversarial.json", r.metrics)
    robustness.plot_curves(r.metrics, "toy", tmp_path / "plots/adversarial/toy/accuracy.png")
    train = np.zeros((4, 4, 4, 3), np.uint8)
    robustness.plot_examples(r.examples, head.names, np.array([[0, 1, 2], [1, 2, 3]],
                                                              dtype=object), train, "toy",
                             tmp_path / "plots/adversarial/toy/examples.png")
    inp = Inputs(root=tmp_path, models=["toy"], archs={"toy": "t"}, feature_models={},
                 adversarial_models=["toy"])
    text = "\n".join(section_adversarial(inp))
    assert "| 60 | 0.00% |" in text  # every toy image broken at 60/255, read from the file
    assert "`algorithm1` acc (transfer)" in text and "../plots/adversarial/toy/examples.png" in text
    (tmp_path / "plots/adversarial/toy/examples.png").unlink()
    with pytest.raises(FclensError, match="examples.png: missing"):
        section_adversarial(inp)


def _stage_project(tmp_path, sparse_k: int, heads: list[tuple[str, int]]):
    """test_activations' tiny project (a random cifar_resnet8 `tiny` on dataset `ds`), with an
    adversarial section naming it and a sparse_heads table holding `heads` (name, k)."""
    import pandas as pd
    import yaml

    from fclens.core import tables
    from test_activations import _project

    data = _project(tmp_path)
    p = yaml.safe_load((tmp_path / "params.yaml").read_text())
    p["sparsify"]["models"] = ["tiny"]
    p["adversarial"].update(models=["tiny"], sparse_models=["tiny"], sparse_k=sparse_k,
                            n_per_class=1, eps=[8.0], steps=2, strong_steps=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"adversarial": {
        "cmd": "python stages/adversarial.py",
        "deps": ["data/ds/test.npz", "data/ds/train.npz", "data/tiny/sparse_heads.parquet"]}}}))
    rows = [{"head": h, "k": k, "class_index": c, "bias": 0.0,
             "weight": np.zeros(64, np.float32)} for h, k in heads for c in range(3)]
    tables.write_frame(data / "sparse_heads.parquet", pd.DataFrame(rows), tables.SPARSE_HEADS, 3)
    return data


def _run_stage(tmp_path, data):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "stages" / "adversarial.py"), "--model", "tiny",
           "--weights", str(data / "fc_weights.parquet"), "--trees",
           str(data / "tree_nodes.parquet"), "--influential", str(data / "influential.parquet"),
           "--exemplars", str(data / "feature_stats.parquet"), "--metrics", str(out / "a.json"),
           "--timing", str(out / "t.json"), "--plot", str(out / "e.png"), "--curve",
           str(out / "c.png")]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_stage_refuses_a_sparse_k_that_sparsify_did_not_write(tmp_path):
    data = _stage_project(tmp_path, 5, [("algorithm1_refit", 1), ("algorithm1_refit", 2),
                                        ("elastic_net_selected", 3)])
    res = _run_stage(tmp_path, data)
    assert res.returncode == 1
    assert "adversarial.sparse_k 5" in res.stderr and "the table has k [1, 2]" in res.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_stage_refuses_sparse_heads_without_the_elastic_net(tmp_path):
    data = _stage_project(tmp_path, 1, [("algorithm1_refit", 1)])
    res = _run_stage(tmp_path, data)
    assert res.returncode == 1
    assert "no elastic_net_selected head for every class" in res.stderr
    assert "sparsify.methods to include elastic_net" in res.stderr
    assert "sparse_k" not in res.stderr  # k is not the elastic net's problem
