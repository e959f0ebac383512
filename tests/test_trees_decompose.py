import numpy as np
import pytest

from conftest import accuracy, decomposed_logits
from fclens.analysis.ablate import Noise, TrainStats, ablation_block, jaccard, replace
from fclens.analysis.decompose import (
    check_k,
    index_mask,
    influential_indices,
    top_k_indices,
    train_masked_heads,
)
from fclens.analysis.trees import (
    build_trees,
    chain_node,
    chain_rank,
    split_tree,
    terminals,
    tree_frames,
)
from fclens.core.errors import FclensError
from fclens.core.params import HeadTraining
from fclens.core.tables import Features, Head


def _feats(x, y) -> Features:
    return Features(np.asarray(x, np.float32), np.asarray(y), np.asarray(y))


def test_chain_tree_on_hand_example():
    w = np.array([-3.0, -1.0, 0.0, 1.0, 2.0, 6.0])
    nodes = split_tree(w, "chain", min_size=3)
    paths = {n.path: sorted(n.indices.tolist()) for n in nodes}
    # root mean 5/6: '+' = {1, 2, 6}, '-' = {-3, -1, 0}; '+' mean 3: '++' = {6}, '+-' = {1, 2}
    assert paths["+"] == [3, 4, 5] and paths["-"] == [0, 1, 2]
    assert paths["++"] == [5] and paths["+-"] == [3, 4]
    assert paths["--"] == [0] and "+-+" not in paths
    assert sorted(t.path for t in terminals(nodes, "chain")) == ["++", "--"]


def test_full_tree_leaves_partition_indices():
    w = np.random.default_rng(0).normal(size=200)
    nodes = split_tree(w, "full", min_size=20)
    leaves = terminals(nodes, "full")
    idx = np.sort(np.concatenate([n.indices for n in leaves]))
    np.testing.assert_array_equal(idx, np.arange(200))
    assert all(len(n.indices) < 20 or np.ptp(w[n.indices]) == 0 for n in leaves)


def test_chain_terminals_are_the_top_weights():
    # the claim behind chain_rank: every node on the '+' chain holds exactly the top-|node|
    # weights of its class, so the blog's chain terminals are the class's largest weights
    w = np.random.default_rng(1).normal(size=(3, 100)).astype(np.float32)
    nodes, _, _ = tree_frames(build_trees(w, "chain", 4), w, ("a", "b", "c"), "chain")
    order = chain_rank(w)
    for c in range(3):
        plus = nodes[(nodes["class_index"] == c) & nodes["path"].str.fullmatch(r"\++")]
        assert len(plus) >= 3
        for idx in plus["indices"]:
            assert sorted(idx.tolist()) == sorted(order[c, :len(idx)].tolist())
        term = chain_node(nodes, c, "+")
        assert sorted(term.tolist()) == sorted(order[c, :len(term)].tolist())


def test_algorithm1_golden_and_tie_break():
    x = np.array([[3, 1, 2, 0], [0, 5, 5, 1], [1, 1, 1, 1]], float)
    y = np.array([0, 0, 1])
    infl = influential_indices(_feats(x, y), 2, k1=2, k2=2)
    idx, counts = infl.idx, infl.counts
    # class 0: image 0 -> {0, 2}, image 1 -> {1, 2} (tie 5 = 5: lower index first)
    # counts 0:1, 1:1, 2:2 -> [2, 0] (tie between 0 and 1 at count 1: lower index)
    assert idx.tolist() == [[2, 0], [0, 1]] and counts.tolist() == [[2, 1], [1, 1]]


def test_k_validation_names_the_key():
    with pytest.raises(FclensError, match="decompose.k2: 65; allowed: an integer in 1..64"):
        check_k(5, 65, 64)
    with pytest.raises(FclensError, match="k1"):
        influential_indices(_feats(np.ones((2, 4)), np.zeros(2, int)), 1, 0, 1)


def test_decomposed_logits_match_the_formula():
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(5, 6)), rng.normal(size=(3, 6)), rng.normal(size=3)
    idx = np.array([[0, 1], [2, 3], [5, 1]])
    out = decomposed_logits(x, w, b, index_mask(idx, 6))
    for c in range(3):
        np.testing.assert_allclose(out[:, c], x[:, idx[c]] @ w[c, idx[c]] + b[c])


def test_retraining_keeps_mask_improves_and_is_deterministic():
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(300, 8))).astype(np.float32)
    y = (x[:, 0] > x[:, 1]).astype(int)
    mask = index_mask(np.array([[0, 2], [1, 3]]), 8)
    head = Head(np.zeros((2, 8), np.float32), np.zeros(2, np.float32), ("a", "b"))
    cfg = HeadTraining(epochs=20, lr=0.05, batch_size=32)
    h1 = train_masked_heads(_feats(x, y), head, mask[None], cfg, 3)[0]
    h2 = train_masked_heads(_feats(x, y), head, mask[None], cfg, 3)[0]
    w1, b1 = h1.w, h1.b
    np.testing.assert_array_equal(w1, h2.w)
    assert (w1[~mask] == 0).all()
    assert ((x @ w1.T + b1).argmax(1) == y).mean() > 0.9


def test_ablation_noise_modes_and_blocks():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    mask = np.array([True, False, True])
    mean, std = np.array([1, 2, 3], np.float32), np.ones(3, np.float32)
    z = replace(x, mask, Noise("zero", mean, std, 0), rng)
    assert (z[:, [0, 2]] == 0).all() and (z[:, 1] == x[:, 1]).all()
    m = replace(x, mask, Noise("train_mean", mean, std, 0), rng)
    assert (m[:, 0] == 1).all() and (m[:, 2] == 3).all()
    with pytest.raises(FclensError, match="allowed"):
        replace(x, mask, Noise("bogus", mean, std, 0), rng)
    # a head that reads only feature 0: noising set {0} hurts, noising {1} does not
    xs = rng.normal(size=(500, 2)).astype(np.float32)
    y = (xs[:, 0] > 0).astype(int)
    head = Head(np.array([[-1.0, 0.0], [1.0, 0.0]]), np.zeros(2), ("a", "b"))
    sets = np.array([[True, False], [True, False]])
    stats = TrainStats.from_source(_feats(xs, y), 2)
    blk = ablation_block(_feats(xs, y), head, sets, Noise.from_train("zero", stats, 0), 2)
    assert blk["acc_original"] == 1.0
    assert blk["acc_noise_influential_union"] < 0.6 and blk["acc_noise_noninfluential_union"] == 1.0
    assert jaccard(sets, ~sets).tolist() == [0.0, 0.0]


def test_top_k_indices_ties_lower_index():
    assert top_k_indices(np.array([[1.0, 2.0, 2.0, 0.0]]), 2).tolist() == [[1, 2]]


def test_accuracy_grid_matches_algorithm1_cell_by_cell():
    from fclens.analysis.decompose import decomposed_accuracy_grid

    rng = np.random.default_rng(3)
    x = np.maximum(rng.normal(size=(300, 12)), 0).round(1)  # ties on purpose
    y = rng.integers(0, 4, 300)
    w, b = rng.normal(size=(4, 12)), rng.normal(size=4)
    head, tr, te = Head(w, b, tuple("abcd")), _feats(x[:200], y[:200]), _feats(x[200:], y[200:])
    acc, union, acc0 = decomposed_accuracy_grid(tr, te, head, [1, 3, 12], [2, 5])
    assert acc0 == accuracy(head.logits(te.x), te.labels)
    for i, k1 in enumerate([1, 3, 12]):
        for j, k2 in enumerate([2, 5]):
            idx = influential_indices(tr, 4, k1, k2).idx
            mask = index_mask(idx, 12)
            assert acc[i, j] == accuracy(decomposed_logits(te.x, w, b, mask), te.labels)
            assert union[i, j] == mask.any(0).sum()
    with pytest.raises(FclensError, match="decompose.grid"):
        decomposed_accuracy_grid(tr, te, head, [13], [1])


def test_finetune_keeps_the_mask_and_is_deterministic():
    import torch

    from fclens.analysis.finetune import finetune_decomposed
    from fclens.core.params import Finetune
    from fclens.models.cifar_resnet import CifarResNet

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 24)
    mask = np.zeros((3, 16), bool)
    mask[[0, 0, 1, 2, 2], [1, 5, 7, 0, 15]] = True
    states, losses = [], []
    for _ in range(2):
        torch.manual_seed(1)
        model = CifarResNet(8, num_classes=3, width=4)
        w0 = model.linear.weight.detach().numpy().copy()
        conv0 = model.conv1.weight.detach().clone()
        b0 = model.linear.bias.detach().numpy().copy()
        log = []
        cfg = Finetune(epochs=2, lr=1e-2, batch_size=8)
        out = finetune_decomposed(model, images, labels, mask, Head(w0, b0, ("a", "b", "c")),
                                  cfg, 3, "cpu", on_epoch=lambda e, info, log=log: log.append(
                                      info["train_loss"]))
        w = out.linear.weight.detach().numpy()
        assert (w[~mask] == 0).all() and (w[mask] != w0[mask]).any()
        assert not torch.equal(out.conv1.weight, conv0) and not out.training
        states.append({k: v.clone() for k, v in out.state_dict().items()})
        losses.append(log)
    assert len(losses[0]) == 2 and losses[0] == losses[1]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
