"""Every timm classifier head type read as one linear map, and weights with exact zeros.

The identity under test: forward_head(x) == forward_head(x, pre_logits=True) @ W.T + b, on tiny
random models (benchmarks/zoo_sweep.py checks one model of every timm family the same way).
"""

import numpy as np
import pytest
import timm
import torch
from torch import nn

from fclens.analysis import ald, trees
from fclens.analysis.trees import chain_rank
from fclens.core.errors import FclensError
from fclens.core.params import Extract
from fclens.explain.pictures import class_order
from fclens.extract.loop import extract
from fclens.models.cifar_resnet import CifarResNet
from fclens.models.heads import linear_head
from fclens.models.inputs import uint8_batches


def _random_bn(model: nn.Module, seed: int = 0) -> None:
    """BatchNorm statistics far from identity, so a folded BN is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))


def _tiny_deit_distilled() -> nn.Module:
    from timm.models.deit import VisionTransformerDistilled

    return VisionTransformerDistilled(img_size=32, patch_size=16, embed_dim=32, depth=1,
                                      num_heads=2, num_classes=5)


# name -> (builder, expected classifier type as get_classifier() gives it, feature dim)
HEADS = {
    "linear": (lambda: CifarResNet(8), "Linear", 64),
    "conv1x1": (lambda: timm.create_model("resnetv2_18", num_classes=5,
                                          channels=(8, 16, 32, 64)), "Conv2d", 64),
    # NormMlpClassifierHead with a hidden layer: pre_logits is the MLP's output (24), not 40
    "pre_logits": (lambda: timm.create_model("test_convnext", num_classes=5,
                                             head_hidden_size=24), "Linear", 24),
    "token": (lambda: timm.create_model("test_vit", num_classes=5, img_size=32), "Linear", 64),
    # multi-head attention pooling (AttentionPoolLatent) before the Linear
    "attention_pool": (lambda: timm.create_model("test_vit", num_classes=5, img_size=32,
                                                 global_pool="map"), "Linear", 64),
    "bn_folded_distilled": (lambda: timm.create_model("repvit_m1", num_classes=5,
                                                      distillation=True),
                            "RepVitClassifier", 384),
}


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_head_is_the_linear_map_of_pre_logits(kind):
    build, expected_type, dim = HEADS[kind]
    torch.manual_seed(0)
    model = build().eval()
    _random_bn(model)
    head = linear_head(model).to_head([str(i) for i in range(5 if kind != "linear" else 10)])
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fmap = model.forward_features(x)
        feats = model.forward_head(fmap, pre_logits=True).double().numpy()  # (3, D)
        logits = model.forward_head(fmap).double().numpy()  # (3, C)
    assert head.w.shape == (logits.shape[1], dim) and feats.shape[1] == dim
    assert np.abs(logits).max() > 1e-3  # the identity below is not 0 == 0
    np.testing.assert_allclose(feats @ head.w.T + head.b, logits, rtol=1e-4, atol=1e-5)
    assert linear_head(model).kind == expected_type


def test_conv_head_weight_is_a_view_of_the_kernel():
    model = timm.create_model("resnetv2_18", num_classes=5, channels=(8, 16, 32, 64))
    fc = linear_head(model)
    conv = model.get_classifier()
    assert conv.weight.shape == (5, 64, 1, 1) and fc.weight.shape == (5, 64)
    assert fc.weight.data_ptr() == conv.weight.data_ptr()


def test_extract_checks_a_conv_head_end_to_end():
    torch.manual_seed(0)
    model = timm.create_model("resnetv2_18", num_classes=5, channels=(8, 16, 32, 64))
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    r = extract(model, uint8_batches(imgs, np.zeros(4, np.int16), 4), Extract(batch_size=4))
    assert r.n == 4 and r.feature_dim == 64 and r.logit_max_abs_err < 1e-5


def test_deit_distilled_pair_is_refused_by_name():
    # its two heads read two different tokens: no single linear map of pre_logits exists
    with pytest.raises(FclensError, match=r"VisionTransformerDistilled.*tuple\(Linear, Linear\)"):
        linear_head(_tiny_deit_distilled()).to_head([str(i) for i in range(5)])


def test_volo_weights_are_read_but_its_logits_are_refused():
    from timm.models.volo import VOLO

    m = VOLO(layers=[1, 1, 1, 1], img_size=64, embed_dims=[16, 32, 32, 32],
             num_heads=[1, 2, 2, 2], num_classes=5)
    assert linear_head(m).to_head(list("abcde")).w.shape == (5, 32)  # the weight stages work
    # its logits add max-over-tokens of an auxiliary head: feature extraction must refuse
    with pytest.raises(FclensError, match=r"VOLO: its logits add .* aux_head"):
        linear_head(m, exact=True)


class _Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) * torch.sigmoid(x.sum(1, keepdim=True))


class _OddModel(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def get_classifier(self):
        return self.head


@pytest.mark.parametrize("head, match", [
    (_Gated(), r"_OddModel: classifier is _Gated; not a linear map"),
    (nn.Sequential(nn.Linear(4, 3), nn.ReLU()), r"classifier is Sequential"),
    (nn.Conv2d(4, 3, 3), r"classifier is Conv2d; not a linear map"),  # 3x3: not a 1x1 head
    (nn.Identity(), r"classifier is Identity; the model has no classifier"),
])
def test_unknown_head_type_is_named(head, match):
    with pytest.raises(FclensError, match=match):
        linear_head(_OddModel(head)).to_head(["a", "b", "c"])


# ---------------------------------------------------------------- exact zeros in the weights

def _weights_with_zeros() -> np.ndarray:
    rng = np.random.default_rng(0)
    w = rng.laplace(size=(6, 200)) * 0.05
    w[0] = 0.0  # a zero-initialised class
    w[1, :60] = 0.0  # 30% exact zeros (a pruned row)
    w[2, :5] = 0.0  # 2.5%: below MAX_TIE_FRAC, fitted as usual
    w[3, :199] = 0.0  # one nonzero weight
    return w


def test_ald_with_exact_zeros_leaves_out_point_masses():
    w = _weights_with_zeros()
    assert ald.tie_count(w)[:4].tolist() == [200, 60, 5, 199]  # the 5 of row 2: 2.5% < 4.7%
    res = ald.compare_families(w)
    status = res["ald_fit"]["status"].tolist()
    # the Student-t likelihood is unbounded on a point mass above MAX_TIE_FRAC: no comparison
    assert status == [ald.CONSTANT, ald.TIES, ald.OK, ald.TIES, ald.OK, ald.OK]
    s = ald.summary(res)
    assert s["n_degenerate"] == 3 and s["status_counts"] == {"constant": 1, "ok": 3, "ties": 2}
    assert s["n_not_converged"] == {"student_t": 0, "logistic": 0}
    assert all(np.isfinite(v) for v in (s["kappa_median"], s["r2_line_median"], s["ks_median"]))
    for fam in ald.FAMILIES:
        assert np.isfinite(res[fam]["aic"][[2, 4, 5]]).all() and np.isnan(res[fam]["aic"][1])


def test_all_zero_head_is_a_clear_error():
    res = ald.compare_families(np.zeros((4, 16)))
    with pytest.raises(FclensError, match=r"no class's weight row could be fitted.*constant"):
        ald.summary(res)


def test_trees_and_fc_picture_order_survive_zero_rows():
    w = _weights_with_zeros()
    forest = trees.build_trees(w, "chain", 20)
    nodes, terms, metrics = trees.tree_frames(forest, w, [str(i) for i in range(6)], "chain")
    assert len(forest[0]) == 1  # a constant row is not split
    assert sorted(class_order(w).tolist()) == list(range(6))
    assert chain_rank(w).shape == w.shape
