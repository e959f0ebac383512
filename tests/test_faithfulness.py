"""Faithfulness metrics on tiny fixed models: the curves, the torchcam definitions, the bootstrap,
the weight-randomization sanity check and the errors. CPU, seconds."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchcam.methods import GradCAMpp
from torchcam.metrics import ClassificationMetric, DeletionInsertionMetric

from fclens.analysis.trees import build_trees
from fclens.core.errors import FclensError
from fclens.core.params import Faithfulness
from fclens.core.tables import Head
from fclens.explain import attributions, sanity
from fclens.explain import faithfulness as fa
from fclens.explain.select import pick_per_class
from fclens.models.cifar_resnet import CifarResNet


class Region(nn.Module):
    """p(class 0) rises with the mean brightness of a known square (rows/cols 4..11 of 16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, :, 4:12, 4:12].mean((1, 2, 3))  # (B,)
        return torch.stack([12 * s - 4, torch.zeros_like(s)], 1)  # (B, 2)


def _object_images(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(n, 3, 16, 16, generator=g)
    x[:, :, 4:12, 4:12] += 0.9  # the object
    return x


def _aligned_and_shuffled(n):
    aligned = torch.zeros(n, 1, 16, 16)
    aligned[:, :, 4:12, 4:12] = 1.0
    aligned += 0.01 * torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(256, generator=torch.Generator().manual_seed(2))
    shuffled = aligned.flatten(2)[..., perm].view_as(aligned)
    return torch.cat([aligned, shuffled], 1)  # (N, 2, 16, 16)


def test_map_on_the_object_beats_a_shuffled_map():
    x = _object_images()
    maps = _aligned_and_shuffled(len(x))
    cls = torch.zeros(len(x), dtype=torch.long)
    curves = fa.perturbation_curves(Region(), x, torch.zeros_like(x), fa.pixel_ranks(maps, 0),
                                    cls, steps=8, batch_size=16)
    dele, ins = curves.auc()  # (N, 2): aligned, shuffled
    assert (dele[:, 0] < dele[:, 1] - 0.1).all() and (ins[:, 0] > ins[:, 1] + 0.1).all()
    drop, inc = fa.drop_and_increase(Region(), x, maps, cls, batch_size=5)
    assert (drop[:, 0] < drop[:, 1]).all()  # keeping the object keeps the probability


def test_curves_have_steps_plus_one_points_from_full_to_baseline():
    x, steps = _object_images(3), 5
    base = fa.blurred(x, 0.1)
    maps = torch.rand(3, 2, 16, 16, generator=torch.Generator().manual_seed(3))
    ranks = fa.pixel_ranks(maps, 0)
    cls = torch.tensor([0, 1, 0])
    c = fa.perturbation_curves(Region(), x, base, ranks, cls, steps, batch_size=7)
    assert c.deletion.shape == c.insertion.shape == (3, 2, steps + 1)
    np.testing.assert_allclose(c.fractions, np.linspace(0, 1, steps + 1), atol=0.5 / 256)
    p_full = fa.class_prob(Region(), x, cls, 2).numpy()
    p_base = fa.class_prob(Region(), base, cls, 2).numpy()
    for k in range(2):
        np.testing.assert_allclose(c.deletion[:, k, 0], p_full, rtol=1e-6)
        np.testing.assert_allclose(c.deletion[:, k, -1], p_base, rtol=1e-6)
        np.testing.assert_allclose(c.insertion[:, k, 0], p_base, rtol=1e-6)
        np.testing.assert_allclose(c.insertion[:, k, -1], p_full, rtol=1e-6)
    # an inner point by hand: image 2, map 1, step 2 of 5 (round(2/5 * 256) = 102 pixels)
    top = (ranks[2, 1] < 102).view(1, 1, 16, 16)
    by_hand = fa.class_prob(Region(), torch.where(top, base[2:3], x[2:3]), cls[2:3], 1)
    np.testing.assert_allclose(c.deletion[2, 1, 2], by_hand.numpy()[0], rtol=1e-6)
    assert np.ptp(fa.blurred(torch.ones(1, 3, 8, 8), 0.2).numpy()) < 1e-6  # blur keeps a constant


def test_pixel_ranks_break_ties_at_random_not_in_raster_order():
    flat = torch.zeros(1, 1, 16, 16)
    flat[..., 0, 0] = 1.0
    r = fa.pixel_ranks(flat, 0).view(16, 16)
    assert r[0, 0] == 0 and sorted(r.flatten().tolist()) == list(range(256))
    assert r[0, 1:].float().mean() > 30  # the rest of the first row is not next in line
    torch.testing.assert_close(r, fa.pixel_ranks(flat, 0).view(16, 16))


def _tiny_prob_setup():
    torch.manual_seed(0)
    model = CifarResNet(8, num_classes=3, width=4).eval()
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    prob = nn.Sequential()  # model -> softmax, so torchcam explains and scores the probability
    prob.add_module("model", model)
    prob.add_module("softmax", nn.Softmax(1))
    return model, prob, x


def test_same_numbers_as_torchcam_where_its_metrics_apply():
    # torchcam explains and scores one output: here the probability itself, so both apply
    model, prob, x = _tiny_prob_setup()
    cls = [0, 1, 2, 1, 0]
    base = fa.blurred(x, 0.15)
    with GradCAMpp(prob, target_layer="model.layer3") as cam:
        torch_di = DeletionInsertionMetric(cam, steps=8, baseline=base, batch_size=7)
        torch_di.update(x, class_idx=cls)
        torch_cm = ClassificationMetric(cam)
        torch_cm.update(x, class_idx=cls)
        maps = cam(class_idx=cls, scores=prob(x))[0]  # (B, 2, 2), torchcam-normalized
    maps = F.interpolate(maps[:, None], size=(8, 8), mode="bilinear", align_corners=False)
    cls_t = torch.tensor(cls)
    ours = fa.perturbation_curves(model, x, base, fa.pixel_ranks(maps, None), cls_t, 8, 6)
    dele, ins = ours.auc()
    want = torch_di.summary()
    np.testing.assert_allclose([dele.mean(), ins.mean()],
                               [want["deletion_auc"], want["insertion_auc"]], rtol=1e-5)
    drop, inc = fa.drop_and_increase(model, x, maps, cls_t, 4)
    want = torch_cm.summary()
    np.testing.assert_allclose([drop.mean(), inc.mean()],
                               [want["avg_drop"], want["conf_increase"]], rtol=1e-5, atol=1e-7)


def test_bootstrap_interval_deterministic_for_a_seed():
    v = np.random.default_rng(0).normal(0.2, 1.0, size=(60, 2))
    a = fa.bootstrap_ci(v, 500, seed=7)
    np.testing.assert_array_equal(a, fa.bootstrap_ci(v, 500, seed=7))
    assert not np.array_equal(a, fa.bootstrap_ci(v, 500, seed=8))
    lo, hi = a
    assert (lo < v.mean(0)).all() and (v.mean(0) < hi).all() and (hi - lo < 1).all()
    assert fa.bootstrap_ci(np.full((9, 1), 0.3), 50, 0)[0][0] == pytest.approx(0.3)


def _head_nodes(model):
    fc = model.get_classifier()
    w, b = fc.weight.detach().numpy(), fc.bias.detach().numpy()
    head = Head(w, b, tuple(f"c{i}" for i in range(len(w))))
    rows = [dict(class_index=n.class_index, path=n.path, depth=n.depth, indices=n.indices)
            for t in build_trees(w, "chain", 4) for n in t]
    return head, pd.DataFrame(rows)


def _settings(**kw):
    s = dict(method="gradcampp", targets=["logit", "terminal+", "branch+", "influential"],
             n_per_class=2, steps=4, n_random=2, n_boot=50, blur_sigma=0.1, batch_size=8)
    return Faithfulness(**{**s, **kw})


def test_target_sets_random_control_and_photo_models():
    torch.manual_seed(0)
    head, nodes = _head_nodes(CifarResNet(8, num_classes=3, width=4))
    infl = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    cls = np.array([2, 0, 2])
    s = fa.target_sets(head, nodes, infl, cls, ["logit", "influential"], 3, seed=0)
    assert s.names == ["logit", "influential"] and s.m.shape == (3, 5, 16)
    assert (np.count_nonzero(s.m[:, 2:], axis=-1) == 3).all()  # random sets: influential size
    np.testing.assert_array_equal(s.m[0], s.m[2])  # same class, same sets
    assert not np.array_equal(s.m[0, 2], s.m[0, 3])  # seeds differ
    photo = fa.target_sets(head, nodes, None, cls, ["logit", "terminal+", "influential"], 2, 0)
    assert photo.names == ["logit", "terminal+"] and photo.random_of == "terminal+"
    np.testing.assert_array_equal(np.count_nonzero(photo.m[:, 2:], -1),
                                  np.count_nonzero(photo.m[:, 1:2], -1).repeat(2, 1))


def test_randomized_copies():
    torch.manual_seed(0)
    model = CifarResNet(8, num_classes=3, width=4).eval()
    with torch.no_grad():  # trained BN affine params vary by channel; fresh ones are constant
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert sanity.last_block(model) == ["layer3.0"]
    lb = sanity.randomized(model, "last_block", 0).state_dict()
    al = sanity.randomized(model, "all", 0).state_dict()
    for k, v in before.items():
        assert torch.equal(model.state_dict()[k], v)  # the model itself is untouched
        changed = not torch.equal(lb[k], v)
        assert changed == (k.startswith("layer3.0.") and "running" not in k
                           and "num_batches" not in k), k
        assert torch.equal(al[k], v) == ("running" in k or "num_batches" in k), k
    torch.testing.assert_close(sanity.randomized(model, "all", 0).state_dict(), al)
    w, w2 = model.layer2[0].conv1.weight, al["layer2.0.conv1.weight"]
    assert w2.std().item() == pytest.approx(w.std().item(), rel=0.3)


def test_sanity_logit_map_decorrelates_when_all_layers_are_randomized():
    torch.manual_seed(0)
    model = CifarResNet(8, num_classes=3, width=8).eval()
    head, nodes = _head_nodes(model)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    cls = np.arange(8) % 3
    s = _settings(targets=["logit"])
    sets = fa.target_sets(head, nodes, None, cls, s.targets, 1, 0)
    raw = attributions.raw_maps(model, x, sets.m, sets.c, s.method, 8, 0)  # (N, 2, 8, 8)
    same = sanity.spearman_rows(raw[:, 0].flatten(1).numpy(), raw[:, 0].flatten(1).numpy())
    assert np.nanmedian(same) == pytest.approx(1.0)
    rho = sanity.sanity_rank_corr(model, x, cls, sets, raw, s, 0, s.method, fa.blurred(x, 0.1))
    assert rho["logit"]["all"] < 0.5 and rho["logit"]["last_block"] < 1


def _tiny_case():
    """A random ResNet8 of 3 classes, 6 images explained for their predictions, an
    influential set of 2 channels per class."""
    torch.manual_seed(0)
    model = CifarResNet(8, num_classes=3, width=4).eval()
    head, nodes = _head_nodes(model)
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        cls = model(x).argmax(1).numpy()
    return model, head, nodes, x, cls, np.array([[0, 1], [2, 3], [4, 5]])


def test_evaluate_end_to_end_and_hooks_removed():
    model, head, nodes, x, cls, infl = _tiny_case()
    r = fa.evaluate(model, head, nodes, infl, x, cls, _settings(), 0)
    m = r.metrics
    assert m["n_images"] == 6 and m["method"] == "gradcampp"
    assert set(m["targets"]) == {"logit", "terminal+", "branch+", "influential", "random"}
    for t, v in m["targets"].items():
        assert 0 <= v["deletion_auc"] <= 1 and 0 <= v["insertion_auc"] <= 1
        assert (t == "random") != ("gap_vs_random_ci95" in v)
    assert m["most_faithful"] in ("logit", "terminal+", "branch+", "influential")
    assert set(m["sanity_rank_corr"]["logit"]) == {"last_block", "all"}
    assert "seconds" in r.timing and not any("second" in k for k in m)
    assert r.mean_curves["random"][0].shape == r.fractions.shape == (5,)
    for mod in model.modules():
        assert not mod._forward_hooks and not mod._backward_hooks


def test_clear_errors():
    torch.manual_seed(0)
    model = CifarResNet(8, num_classes=3, width=4).eval()
    head, nodes = _head_nodes(model)
    with pytest.raises(FclensError, match="no test image picked"):
        pick_per_class(np.array([0, 0, 1]), 3, 0)
    np.testing.assert_array_equal(pick_per_class(np.array([1, 0, 0, 1, 0]), 2, 2),
                                  [0, 1, 2, 3])
    with pytest.raises(FclensError, match="no images picked"):
        fa.evaluate(model, head, nodes, None, torch.zeros(0, 3, 8, 8), np.zeros(0, int),
                    _settings(), 0)
    with pytest.raises(FclensError, match=r"faithfulness.targets: unknown \['bogus'\]"):
        fa.target_sets(head, nodes, None, np.array([0]), ["logit", "bogus"], 2, 0)
    with pytest.raises(FclensError, match="leaves no target"):
        fa.target_sets(head, nodes, None, np.array([0]), ["influential"], 2, 0)
    with pytest.raises(FclensError, match="steps"):
        fa.step_counts(64, 65)

    class Tokens(nn.Module):  # a ViT-like model: forward_features gives (B, N, C)
        def forward_features(self, x):
            return x.flatten(2).transpose(1, 2)

    with pytest.raises(FclensError, match="NCHW spatial map"):
        fa.evaluate(Tokens(), head, nodes, None, torch.zeros(2, 16, 2, 2), np.zeros(2, int),
                    _settings(targets=["logit"]), 0)



def _report_json(lo_influential):
    t = {"deletion_auc": 0.3, "insertion_auc": 0.7, "gap": 0.4, "average_drop": 0.2,
         "increase_confidence": 0.3}
    targets = {name: {**t, "gap_vs_random": 0.1, "gap_vs_random_ci95": [0.05, 0.15]}
               for name in ("logit", "terminal+", "influential")}
    targets["influential"]["gap_vs_random_ci95"] = [lo_influential, 0.1]
    targets["random"] = {**t, "gap": 0.3}
    return {"method": "gradcampp", "n_images": 20, "steps": 10, "baseline": "gaussian blur",
            "blur_sigma": 0.1, "n_random": 5, "random_size_of": "influential",
            "most_faithful": "logit", "random_worse_than_all": lo_influential > 0,
            "targets": targets,
            "sanity_rank_corr": {k: {"last_block": 0.5, "all": 0.1} for k in targets
                                 if k != "random"}}


def test_report_section_says_whether_random_scores_worse(tmp_path):
    import json

    from fclens.report.doc import Inputs
    from fclens.report.sections.faithfulness import section_faithfulness

    inp = Inputs(tmp_path, ["m"], {"m": "cifar_resnet20"}, {"m": "d"})
    with pytest.raises(FclensError, match="metrics/m/faithfulness.json: missing"):
        section_faithfulness(inp)
    (tmp_path / "metrics/m").mkdir(parents=True)
    (tmp_path / "plots/faithfulness").mkdir(parents=True)
    (tmp_path / "plots/faithfulness/m.png").write_bytes(b"png")
    for lo, says in ((0.01, "scores worse than every target"), (-0.02, "does **not** score")):
        (tmp_path / "metrics/m/faithfulness.json").write_text(json.dumps(_report_json(lo)))
        text = "\n".join(section_faithfulness(inp))
        assert says in text and "**logit**" in text
        assert "| logit | 0.3 | 0.7 | 0.1 [0.05, 0.15] | 0.2 | 0.3 | 0.5 | 0.1 |" in text
        assert "| random | 0.3 | 0.7 | (control) | 0.2 | 0.3 | - | - |" in text
    assert "interval of influential does not lie above 0" in text


# ---------------------------------------------------------------- input gradients (captum)

def test_integrated_gradients_completeness_and_saliency_is_the_gradient():
    """IG's attributions sum to f(x) - f(baseline) (completeness); saliency is |df/dx| summed
    over the colour channels, as autograd gives it."""
    from fclens.explain.attributions import input_maps

    torch.manual_seed(0)
    model = CifarResNet(8, num_classes=3, width=4).eval()
    head, _ = _head_nodes(model)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    base = fa.blurred(x, 0.1)
    m = np.stack([head.w[[0, 2]]] * 3)  # (B, K=2, D): the logits of classes 0 and 2
    c = np.stack([head.b[[0, 2]]] * 3)
    with torch.no_grad():
        f = (model(x) - model(base))[:, [0, 2]].numpy()  # (B, 2)
    ig = input_maps(model, x, m, c, "integrated_gradients", base, n_steps=64)
    np.testing.assert_allclose(ig.sum((2, 3)).numpy(), f, rtol=0.02, atol=2e-3)
    sal = input_maps(model, x, m, c, "saliency")
    xr = x.clone().requires_grad_(True)
    model(xr)[:, 2].sum().backward()
    np.testing.assert_allclose(sal[:, 1].numpy(), xr.grad.abs().sum(1).numpy(), rtol=1e-5,
                               atol=1e-7)
    sg = input_maps(model, x, m, c, "smoothgrad", n_samples=4, sigma=0.1, seed=3)
    assert torch.equal(sg, input_maps(model, x, m, c, "smoothgrad", n_samples=4, sigma=0.1,
                                      seed=3))  # seeded
    assert not torch.allclose(sg, sal) and (sg >= 0).all()
    with pytest.raises(FclensError, match="allowed saliency, smoothgrad"):
        input_maps(model, x, m, c, "lime")


def test_every_method_through_the_same_protocol():
    model, head, nodes, x, cls, infl = _tiny_case()
    methods = ["gradcampp", "saliency", "smoothgrad", "integrated_gradients"]
    r = fa.evaluate(model, head, nodes, infl, x, cls, _settings(methods=methods, ig_steps=4,
                                                                 smoothgrad_samples=2), 0)
    m = r.metrics
    assert list(m["by_method"]) == methods
    top = {k: v for k, v in m.items() if k not in ("by_method", "most_faithful_method",
                                                   "sanity_randomized")}
    assert top == m["by_method"]["gradcampp"]  # the top level is `method`'s block
    for meth, b in m["by_method"].items():
        assert b["method"] == meth and set(b["targets"]) == set(m["targets"])
        for t, v in b["targets"].items():
            assert set(v) == set(m["targets"][t])
            assert 0 <= v["deletion_auc"] <= 1 and 0 <= v["insertion_auc"] <= 1
        assert set(b["sanity_rank_corr"]["logit"]) == {"last_block", "all"}
    assert set(m["most_faithful_method"]) == set(m["targets"])
    assert r.timing["saliency"]["seconds"] > 0
    # the same images and control for every method: a method's block does not depend on which
    # other methods were asked for
    alone = fa.evaluate(model, head, nodes, infl, x, cls, _settings(methods=["saliency"]), 0)
    assert alone.metrics["by_method"]["saliency"] == m["by_method"]["saliency"]


def test_report_names_the_most_faithful_method_per_target():
    from fclens.report.sections.faithfulness import by_method

    f = _report_json(0.05)
    assert by_method(f) == ["Only gradcampp was measured (params `faithfulness.methods`).", ""]
    sal = _report_json(-0.01)
    sal["method"] = "saliency"
    sal["targets"]["influential"]["gap"] = 0.9  # larger gap, interval not above 0
    f["by_method"] = {"gradcampp": _report_json(0.05), "saliency": sal}
    text = "\n".join(by_method(f))
    assert "| saliency | influential | 0.3 | 0.7 |" in text
    assert "influential: **saliency** (gap 0.9; its gap vs random does not lie above 0)" in text
    assert "logit: **gradcampp** (gap 0.4; its gap vs random lies above 0)" in text
    assert "own random control instead" in text and "influential: **gradcampp** (0.1)" in text
