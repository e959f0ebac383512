"""Maximum-response inputs (explain.visualize, explain.spectrum) on tiny CPU models, in seconds."""

import numpy as np
import pytest
import torch
from torch import nn

from fclens.core.errors import FclensError
from fclens.explain import visualize as vis
from fclens.explain.spectrum import magnitude_spectrum, resize_spectrum

SIDE, PIX = 8, (3, 5)


class PixelModel(nn.Module):
    """timm head API; pixel space == model space (mean 0, std 1). The pooled 'feature' is the red
    value v of one pixel; logits (v - 0.5, 0.5 - v): class 0's logit is that pixel's value."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.linear.bias.copy_(torch.tensor([-0.5, 0.5]))
        self.pretrained_cfg = dict(input_size=(3, SIDE, SIDE), mean=(0.0,) * 3, std=(1.0,) * 3)

    def forward_features(self, x):
        return x[:, :1, PIX[0]:PIX[0] + 1, PIX[1]:PIX[1] + 1]  # (B, 1, 1, 1)

    def forward_head(self, x, pre_logits=False):
        x = x.flatten(1)  # (B, 1)
        return x if pre_logits else self.linear(x)

    def get_classifier(self):
        return self.linear

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class FixedSizeModel(PixelModel):
    """Takes SIDE x SIDE inputs only (a dense layer on the flattened image); 4 features."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(3 * SIDE * SIDE, 4)
        self.linear = nn.Linear(4, 3)

    def forward_features(self, x):
        return self.dense(x.flatten(1))[:, :, None, None]  # (B, 4, 1, 1)


def _flat_spectrum(seed: int = 0) -> np.ndarray:
    """A white-noise spectrum: any magnitude is allowed, it need not be natural."""
    rng = np.random.default_rng(seed)
    return magnitude_spectrum(rng.integers(0, 256, (16, SIDE, SIDE, 3), dtype=np.uint8), "noise")


def _targets(model, objectives=("logit",), n_classes=2, features=1):
    w = model.get_classifier().weight.detach().numpy()
    b = model.get_classifier().bias.detach().numpy()
    sets = [np.arange(features)] * n_classes
    return vis.build_targets(w, b, np.arange(n_classes), list(objectives), sets, sets)


def _run(model, targets, method, seed=0, steps=40):
    mag = _flat_spectrum() if method == "maco" else None
    return vis.visualize(model, targets, method, steps, 0.1, 2, SIDE, mag, seed)


@pytest.mark.parametrize("method", vis.METHODS)
def test_pixel_logit_driven_to_its_bound(method):
    model = PixelModel().eval()
    r = _run(model, _targets(model), method, steps=80)
    up, down = r.images[0, 0], r.images[1, 0]  # red channels: maximize / minimize the pixel
    if method == "fourier":  # free spectrum: class 0 (logit = the pixel) reaches the bound 1
        assert up[PIX] > 0.97 and down[PIX] < 0.03
    else:  # MACO fixes |spectrum|, so the standardized image cannot hold one saturated pixel:
        # the pixel is driven among the brightest (darkest) of its image, well past the mean
        assert up[PIX] >= np.quantile(up, 0.9) and up[PIX] > 0.75
        assert down[PIX] <= np.quantile(down, 0.1) and down[PIX] < 0.25
    assert up.mean() < 0.9  # not vacuous: the image as a whole is not saturated
    assert (r.transparency is not None) == (method == "maco")


def test_constant_images_refused():
    with pytest.raises(FclensError, match="constant.*expected natural images"):
        magnitude_spectrum(np.full((5, SIDE, SIDE, 3), 128, np.uint8), "data/x/train.npz")
    mag = _flat_spectrum()
    assert mag.shape == (3, SIDE, SIDE // 2 + 1) and (mag >= 0).all()
    assert resize_spectrum(mag, (16, 16)).shape == (3, 16, 9)


def test_unknown_names_name_the_params_key():
    model = PixelModel()
    with pytest.raises(FclensError, match=r"params.yaml visualize.objectives: unknown \['nope'\]"):
        _targets(model, ("logit", "nope"))
    with pytest.raises(FclensError,
                       match=r"params.yaml visualize.methods: unknown \['deepdream'\]"):
        vis.visualize(model, _targets(model), "deepdream", 1, 0.1, 1, SIDE, None, 0)


def test_size_the_model_cannot_take():
    model = FixedSizeModel().eval()
    assert vis.input_side(model, None) == SIDE
    with pytest.raises(FclensError, match=r"params.yaml visualize.size: 16 .*allowed: null"):
        vis.input_side(model, 16)


def test_one_batch_of_classes_times_objectives(monkeypatch):
    model = FixedSizeModel().eval()
    built = []
    real = torch.optim.NAdam

    def counting(params, **kw):
        params = list(params)
        built.append([tuple(p.shape) for p in params])
        return real(params, **kw)

    monkeypatch.setattr(torch.optim, "NAdam", counting)
    t = _targets(model, vis.OBJECTIVES, n_classes=3, features=4)
    for method in vis.METHODS:
        r = _run(model, t, method, steps=2)
        assert r.images.shape == (3 * 3, 3, SIDE, SIDE)
    assert len(built) == 2 and all(len(s) == 1 and s[0][0] == 9 for s in built)
    # objective-major rows; the terminal row's channel is the set's largest weight
    w = model.linear.weight.detach().numpy()
    assert list(t.cls) == [0, 1, 2] * 3 and list(t.obj) == [0] * 3 + [1] * 3 + [2] * 3
    assert list(t.channel[6:]) == list(w.argmax(1))
    assert np.allclose(t.m[:3], w) and np.allclose(t.c[6:], 0)


@pytest.mark.parametrize("method", vis.METHODS)
def test_seeded_determinism(method):
    model = FixedSizeModel().eval()
    t = _targets(model, ("logit",), n_classes=3, features=4)
    a, b = _run(model, t, method, seed=3, steps=5), _run(model, t, method, seed=3, steps=5)
    c = _run(model, t, method, seed=4, steps=5)
    assert np.array_equal(a.images, b.images)
    assert not np.allclose(a.images, c.images)


def test_self_rate_on_a_toy():
    model = PixelModel().eval()
    x = np.full((3, 3, SIDE, SIDE), 0.5, np.float32)
    x[0, 0, PIX[0], PIX[1]] = 1.0  # logits (0.5, -0.5): class 0
    x[1, 0, PIX[0], PIX[1]] = 0.0  # (-0.5, 0.5): class 1
    x[2, 0, PIX[0], PIX[1]] = 0.9  # class 0
    p = vis.judge(model, x)
    assert np.allclose(p.sum(1), 1) and list(p.argmax(1)) == [0, 1, 0]
    assert vis.rate(p, np.array([0, 0, 0])) == pytest.approx(2 / 3)
    assert vis.rate(p, np.array([0, 1, 0])) == 1.0
    # a judge of another input size sees the image resized bilinearly (a flat image stays flat)
    big = np.full((1, 3, 2 * SIDE, 2 * SIDE), 0.75, np.float32)
    assert vis.judge(model, big).argmax(1)[0] == 0


def test_plausibility_and_path_check_on_a_toy():
    vis_f = np.array([[1.0, 0.0], [0.0, 1.0]])
    nat = np.array([[2.0, 0.0], [1.0, 0.1], [0.0, 3.0]])
    same, other = vis.plausibility(vis_f, np.array([0, 1]), nat, np.array([0, 0, 1]))
    assert same[0] == pytest.approx((1 + 1 / np.hypot(1, 0.1)) / 2) and same[1] == 1.0
    assert other[0] == 0.0
    pc = vis.path_check({"pooled": vis_f}, {"pooled": nat}, np.array([0, 1]), np.array([0, 0, 1]))
    assert pc["layers"] == ["pooled"] and pc["same_class"][0] > pc["other_class"][0]
    # the natural reference, by hand: image 0 vs image 1 alone (leave-one-out), image 1 vs
    # image 0, image 2 alone in its class (NaN, left out); other: each against the other mean
    ref = vis.path_check_natural({"pooled": nat}, np.array([0, 0, 1]))
    cos01 = 1 / np.hypot(1, 0.1)
    assert ref["same_class"][0] == pytest.approx(cos01)
    mean0 = np.array([1.5, 0.05])
    others = [0.0, 0.1 / np.hypot(1, 0.1), mean0[1] / np.linalg.norm(mean0)]
    assert ref["other_class"][0] == pytest.approx(np.mean(others))


class MeanRedModel(PixelModel):
    """The pooled 'feature' is the red channel's mean over the whole image: only the image's
    mean colour (the spectrum's zero frequency) moves class 0's logit."""

    def forward_features(self, x):
        return x[:, :1].mean((2, 3), keepdim=True)  # (B, 1, 1, 1)


def test_maco_can_move_the_mean_colour():
    """The DC term of the fixed spectrum is not 0, so a MACO image can take a mean colour: on a
    natural 1/f spectrum, the image maximizing the red mean is clearly redder than the one
    minimizing it, and by far more than with DC set to 0 (where only the sigmoid's curvature
    moves the mean)."""
    model = MeanRedModel().eval()
    f = np.sqrt(np.fft.fftfreq(SIDE)[:, None] ** 2 + np.fft.rfftfreq(SIDE)[None] ** 2)
    mag = np.repeat((1 / np.maximum(f, 1 / SIDE))[None], 3, 0).astype(np.float32)
    gap = {}
    for dc in (True, False):
        m = mag.copy()
        m[:, 0, 0] = (m[:, 0, 1] + m[:, 1, 0] + m[:, -1, 0]) / 3 if dc else 0.0
        r = vis.visualize(model, _targets(model), "maco", 60, 0.1, 2, SIDE, m, 0)
        gap[dc] = r.images[0, 0].mean() - r.images[1, 0].mean()
    assert gap[True] > 0.07 and gap[True] > 2 * gap[False]
    flat = _flat_spectrum()  # magnitude_spectrum sets DC so
    assert flat[:, 0, 0] == pytest.approx((flat[:, 0, 1] + flat[:, 1, 0] + flat[:, -1, 0]) / 3)
