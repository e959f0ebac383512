"""CAM maps on tiny random models: shapes, ranges, hooks, and the two exact identities."""

import numpy as np
import pandas as pd
import pytest
import timm
import torch

from fclens.analysis.banding import spatial_convs
from fclens.analysis.trees import build_trees
from fclens.core.tables import Head
from fclens.explain.cams import class_activation_map, class_targets, compute_cams
from fclens.explain.pictures import banding_tiles, filter_tiles, first_conv
from fclens.explain.select import pick_images
from fclens.models.cifar_resnet import CifarResNet


def _tiny():
    torch.manual_seed(0)
    return CifarResNet(8, num_classes=5, width=4).eval()


def _x(n=3, size=32, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _fmap(model, x):
    with torch.inference_mode():
        return model.forward_features(x).numpy()  # (B, K, h, w)


def _logit_targets(model, classes):
    w = model.get_classifier().weight.detach().numpy()
    b = model.get_classifier().bias.detach().numpy()
    return w[classes][:, None, :].copy(), b[classes][:, None].copy()


@pytest.mark.parametrize("arch", ["cifar", "timm_resnet18"])
def test_gradcam_of_logit_equals_cam(arch):
    # GAP + linear head: dY_c/dA_k(i,j) = W[c,k]/(h*w), so Grad-CAM = ReLU(CAM)/(h*w) exactly
    if arch == "cifar":
        model, x = _tiny(), _x()
    else:
        torch.manual_seed(0)
        model, x = timm.create_model("resnet18", num_classes=5).eval(), _x(2, 64)
    classes = np.arange(len(x)) % 5
    m, c = _logit_targets(model, classes)
    g = compute_cams(model, x, m, c, "gradcam", raw=True).maps[:, 0]  # (B, h, w)
    cam = np.stack([class_activation_map(model, x[i:i + 1], int(k))[0]
                    for i, k in enumerate(classes)])
    hw = g.shape[-1] * g.shape[-2]
    np.testing.assert_allclose(g * hw, np.maximum(cam, 0), rtol=1e-4, atol=1e-5)
    assert (cam < 0).any() and (cam > 0).any()  # the ReLU matters: not a vacuous check


def test_gradcam_of_channel_sum_is_sum_of_channels():
    model, x = _tiny(), _x()
    a = _fmap(model, x)
    sets = [[0, 3], [5], [1, 2, 15]]
    m = np.zeros((len(x), len(sets), a.shape[1]), np.float32)
    for j, s in enumerate(sets):
        m[:, j, s] = 1.0
    g = compute_cams(model, x, m, np.zeros(m.shape[:2], np.float32), "gradcam", raw=True).maps
    hw = a.shape[-1] * a.shape[-2]
    for j, s in enumerate(sets):
        np.testing.assert_allclose(g[:, j] * hw, np.maximum(a[:, s].sum(1), 0), rtol=1e-4,
                                   atol=1e-6)


@pytest.mark.parametrize("method", ["gradcampp", "smooth_gradcampp"])
def test_maps_input_sized_finite_unit_range_and_flat_for_zero_gradient(method):
    model, x = _tiny(), _x()
    m, c = _logit_targets(model, [0, 1, 2])
    m = np.concatenate([m, np.zeros_like(m)], 1)  # second target: constant, zero gradient
    c = np.concatenate([c, np.ones_like(c)], 1)
    r = compute_cams(model, x, m, c, method, n_samples=3, sigma=0.2)
    assert r.maps.shape == (3, 2, 32, 32) and r.n_maps == 6
    assert np.isfinite(r.maps).all() and r.maps.min() >= 0 and r.maps.max() <= 1
    assert (r.maps[:, 0].reshape(3, -1).max(1) > 0.99).all()  # min-max normalized
    assert np.ptp(r.maps[:, 1]) == 0  # no gradient -> flat map


def test_hooks_removed_and_model_untouched():
    model, x = _tiny(), _x()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    m, c = _logit_targets(model, [0, 1, 2])
    compute_cams(model, x, m, c, "smooth_gradcampp", n_samples=2)
    for mod in model.modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks
        assert not mod._backward_hooks
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_smooth_gradcampp_deterministic_and_target_order_free():
    model, x = _tiny(), _x()
    m, c = _logit_targets(model, [0, 1, 2])
    both_m = np.concatenate([m, m[:, :, ::-1].copy()], 1)
    both_c = np.concatenate([c, c], 1)
    a = compute_cams(model, x, both_m, both_c, "smooth_gradcampp", n_samples=4, seed=3).maps
    b = compute_cams(model, x, both_m, both_c, "smooth_gradcampp", n_samples=4, seed=3).maps
    np.testing.assert_array_equal(a, b)
    alone = compute_cams(model, x, m, c, "smooth_gradcampp", n_samples=4, seed=3).maps
    np.testing.assert_array_equal(alone[:, 0], a[:, 0])


def _nodes(w, mode="chain", min_size=4):
    rows = [dict(class_index=n.class_index, path=n.path, depth=n.depth, indices=n.indices)
            for t in build_trees(w, mode, min_size) for n in t]
    return pd.DataFrame(rows)


def test_class_targets_rows():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 40)).astype(np.float32), np.array([0.1, 0.2, 0.3], np.float32)
    infl = np.array([[1, 2], [3, 4], [5, 6]])
    head = Head(w, b, ("a", "b", "c"))
    names, m, c = class_targets(head, 1, _nodes(w), infl)
    assert names == ["logit", "terminal+", "terminal-", "branch+", "branch-", "influential"]
    np.testing.assert_array_equal(m[0], w[1])
    assert c[0] == np.float32(0.2) and (c[1:] == 0).all()
    tp, tn, bp, bn = (np.flatnonzero(r) for r in m[1:5])
    assert set(tp) < set(bp) and set(tn) < set(bn) and not set(bp) & set(bn)
    assert len(bp) + len(bn) == 40
    assert w[1, tp].min() > w[1, bp].mean() and w[1, tn].max() < w[1, bn].mean()
    np.testing.assert_array_equal(np.flatnonzero(m[5]), [3, 4])
    names, m, _ = class_targets(head, 1, _nodes(w), None)
    assert "influential" not in names and len(m) == 5


def test_pick_images_correct_then_wrong_per_class():
    labels = np.array([0, 0, 1, 0, 1, 0, 1])
    preds = np.array([0, 1, 1, 0, 0, 2, 1])
    np.testing.assert_array_equal(pick_images(labels, preds, [0, 1], 1, 2), [0, 1, 5, 2, 4])


def test_weight_pictures():
    model = _tiny()
    assert first_conv(model) is model.conv1
    name, conv = spatial_convs(model)[-1]  # the last spatial conv (it feeds the pooling)
    assert name == "layer3.0.conv2"
    t = filter_tiles(np.array([[[[1.0, -1.0]], [[0.0, 0.5]], [[0.0, 0.0]]]]))  # (1, 3, 1, 2)
    np.testing.assert_allclose(t[0], [[[1.0, 0.5, 0.5], [0.0, 0.75, 0.5]]])
    tiles, how = banding_tiles(conv.weight.detach().numpy(), 5)
    assert tiles.shape == (5, 3, 3, 3) and "NMF" in how
    assert tiles.min() >= 0 and np.isclose(tiles.reshape(5, -1).max(1), 1).all()
    dw, how = banding_tiles(np.random.default_rng(0).normal(size=(7, 1, 3, 3)), 4)
    assert dw.shape == (4, 3, 3, 3) and "signed" in how


def test_token_models_are_refused_with_a_clear_error():
    from fclens.core.errors import FclensError

    class Tokens(torch.nn.Module):  # a ViT-like model: forward_features gives (B, N, C)
        def forward_features(self, x):
            return x.flatten(2).transpose(1, 2)

    with pytest.raises(FclensError, match="NCHW spatial map"):
        compute_cams(Tokens(), _x(1), np.zeros((1, 1, 3), np.float32),
                     np.zeros((1, 1), np.float32))


def test_gradcampp_uses_the_papers_pixel_weights():
    # alpha = g^2 / (2 g^2 + sum_ij A g^3) (torchcam 0.5.0 leaves alpha = g^2); the weights of
    # channel k are sum_ij alpha relu(g): checked against a hand computation on a real gradient
    model, x = _tiny(), _x(2)
    m, c = _logit_targets(model, [1, 3])
    fmap = torch.from_numpy(_fmap(model, x))  # (B, K, h, w)
    # the logit is linear in the pooled map: d logit / dA = W[c] / (h w), the same at every pixel
    hw = fmap.shape[2] * fmap.shape[3]
    g = torch.from_numpy(m[:, 0])[:, :, None, None].expand_as(fmap) / hw
    g2 = g ** 2
    alpha = torch.where(g2 > 0, g2 / (2 * g2 + (g2 * g * fmap).sum((2, 3), keepdim=True) + 1e-8),
                        torch.zeros_like(g2))
    want = torch.relu((alpha * torch.relu(g)).sum((2, 3))[:, :, None, None] * fmap).sum(1)
    got = compute_cams(model, x, m, c, "gradcampp", raw=True).maps[:, 0]  # (B, h, w)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-7)
    # and it is not torchcam's unfixed map (weights sum g^2 relu(g)) on this input
    old = torch.relu((g2 * torch.relu(g)).sum((2, 3))[:, :, None, None] * fmap).sum(1)
    assert not np.allclose(got / got.max(), old.numpy() / old.numpy().max(), rtol=1e-3)
