"""Sparse heads (fclens.analysis.sparsify): each selection method on problems whose answer is
known, the refit's masks, the equivalences the report states, exact global-pruning counts,
the bad-input errors, and the metrics contract through the plots and the report section."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT
from fclens.analysis import ald, sparsify, trees
from fclens.analysis.ablate import TrainStats
from fclens.analysis.decompose import index_mask, influential_indices, top_k_indices
from fclens.analysis.sparsify import methods as registry
from fclens.core import io, tables
from fclens.core.errors import FclensError
from fclens.core.params import Sparsify, SparsifyRefit, load_params
from fclens.core.tables import Features, Head
from fclens.plots import studies
from fclens.report.sections import build_markdown
from fclens.report.sections.sparsify import section_sparsify

C, D = 3, 12
SUPPORT = np.array([[0, 5], [3, 9], [7, 10]])  # class c's true features


def synthetic(n: int, seed: int) -> Features:
    """Post-ReLU-like features: weak noise everywhere, class c's two support features high."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % C
    x = np.abs(rng.normal(0, 0.3, (n, D)))
    x[np.arange(n)[:, None], SUPPORT[y]] += rng.uniform(1.5, 2.5, (n, 2))
    return Features(x.astype(np.float32), y.astype(np.int64), y.astype(np.int64))


def synthetic_head(seed: int = 0) -> Head:
    """An FC layer that uses the supports and, more weakly, a few other features."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.2, (C, D))
    w[np.arange(C)[:, None], SUPPORT] = 1.5
    return Head(w.astype(np.float32), np.zeros(C, np.float32), ("a", "b", "c"))


def ald_fit_of(w: np.ndarray) -> dict:
    f = ald.fit_ald(w)
    return {k: f[k] for k in ("loc", "scale", "kappa")}


ALL = list(sparsify.METHODS)


def settings(**kw) -> Sparsify:
    """The params sparsify section, small (the run's seed is passed beside it: 0)."""
    base = dict(methods=ALL, k_grid=[1, 2, 5, 12], n_random=3, val_fraction=0.2,
                refit=dict(epochs=2, lr=0.01, batch_size=64),
                elastic_net=dict(alpha=0.99, n_lambda=12, epsilon=0.001, epochs=5, lr=0.1,
                                 batch_size=256, max_rows=10_000),
                csg=dict(penalty_min=0.01, penalty_max=3.0, n_penalties=6, epochs=3, lr=0.05,
                         batch_size=64, threshold=0.5),
                ald_natural_cut_p=0.05, global_fractions=[0.5, 0.2, 0.1])
    return Sparsify.model_validate({**base, **kw})


# --- the methods on a problem with a known answer --------------------------------------------

def test_top_contribution_recovers_the_support():
    f = synthetic(600, 0)
    stats = TrainStats.from_source([f], C)
    contrib = sparsify.contribution(stats, synthetic_head().w)
    assert np.array_equal(np.sort(top_k_indices(contrib, 2), 1), SUPPORT)


def test_elastic_net_path_recovers_the_support():
    path = sparsify.elastic_net_path(synthetic(900, 0), synthetic(300, 1), C,
                                     settings().elastic_net, seed=0)
    assert path.lam[0] > path.lam[-1] == 0  # from all-zero down to the unpenalized fit
    assert path.nec[0] <= 2 and path.nec[-1] > 6
    i = path.at_k(2)
    assert path.nec[i] >= 2 and (i == 0 or path.nec[i - 1] < 2)  # the largest such lambda
    got = [set(np.flatnonzero(path.w[i, c] > 0)) for c in range(C)]
    assert got == [set(s) for s in SUPPORT.tolist()]
    assert path.val_acc[path.selected()] >= path.val_acc.max() - sparsify.EN_SELECT_DROP
    # the weights are mapped back to the raw features: the path's own logits on raw x
    f = synthetic(300, 2)
    assert (f.x @ path.w[i].T + path.b[i]).argmax(1).tolist() == f.labels.tolist()


def test_algorithm1_at_k5_equals_the_influential_table(tmp_path):
    f = synthetic(300, 0)
    batches = [Features(f.x[i:i + 70], f.labels[i:i + 70], f.preds[i:i + 70])
               for i in range(0, 300, 70)]  # streamed in uneven batches
    tables.write_influential(tmp_path / "infl.parquet", influential_indices([f], C, 5, 5))
    infl = tables.read_influential(tmp_path / "infl.parquet", C, D)
    got = sparsify.algorithm1_masks(batches, C, [1, 5])
    assert np.array_equal(got[5], index_mask(infl.idx, D))
    assert np.array_equal(got[1], index_mask(influential_indices([f], C, 1, 1).idx, D))


def test_random_sets_are_deterministic_by_seed_and_nested():
    a = sparsify.random_rankings(C, D, seed=3, n=4)
    assert np.array_equal(a, sparsify.random_rankings(C, D, seed=3, n=4))
    assert not np.array_equal(a, sparsify.random_rankings(C, D, seed=4, n=4))
    assert all(np.array_equal(np.sort(r, 1), np.tile(np.arange(D), (C, 1))) for r in a)
    assert len({r.tobytes() for r in a}) == 4  # seeds differ from each other


def test_refit_never_touches_weights_outside_the_mask():
    f, head = synthetic(400, 0), synthetic_head()
    bank = sparsify.Bank(head)
    masks = [index_mask(SUPPORT, D), index_mask(top_k_indices(head.w, 5), D),
             np.random.default_rng(0).random((C, D)) < 0.3]
    points = [bank.add(m) for m in masks]
    bank.score([f], [synthetic(200, 1)], SparsifyRefit(epochs=3, lr=0.05, batch_size=32), 0)
    for m, p in zip(masks, points):
        h = bank.refit_heads[p.refit_index]
        assert np.all(h.w[~m] == 0) and np.all(h.w[m] != head.w[m])  # trained inside only
        # no refit: the original, masked
        assert np.array_equal(bank.heads[p.no_refit_index][0], head.w * m)
    assert points[0].acc_refit >= 0.9 and len(bank.refit_heads) == 3


# --- the equivalences the report states ------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chain_tree_terminals_and_ald_upper_tail_rank_are_the_weight_order(seed):
    rng = np.random.default_rng(seed)
    w = rng.laplace(0, 1, (8, 64)) * rng.uniform(0.5, 2, (8, 1))
    w[2, :10] = w[2, 10]  # ties: lower index first in both orders
    fit = ald_fit_of(w)
    for row, kappa, loc in ((0, 0.0, w[0].min()), (1, np.inf, w[1].max())):
        fit["kappa"][row], fit["loc"][row] = kappa, loc  # boundary fits: shifted exponentials
    top = top_k_indices(w, 64)
    log_sf, _ = sparsify.ald_tails(w, fit)
    assert np.array_equal(np.argsort(log_sf, axis=1, kind="stable"), top)
    for c in range(len(w)):  # the blog's trees (trees.min_size = 20): '+' terminal = top n
        for node in trees.terminals(trees.split_tree(w[c], "chain", 20, c), "chain"):
            if node.chain_sign == "+":
                assert set(node.indices) == set(top[c, :len(node.indices)])
    e = sparsify.equivalences(w, fit, [1, 2, 5, 64])
    assert e == {"chain_tree_terminals": True, "ald_upper_tail_rank": True,
                 "ald_classes_checked": 8}


def test_the_ald_check_fails_when_the_tail_is_the_wrong_one():
    w = np.random.default_rng(0).laplace(0, 1, (4, 30))
    fit = ald_fit_of(w)
    assert sparsify.equivalences(w, {k: -v if k == "loc" else v for k, v in fit.items()},
                                 [3])["ald_upper_tail_rank"]  # monotone whatever the location
    assert not sparsify.equivalences(w, {**fit, "scale": -fit["scale"]},
                                     [3])["ald_upper_tail_rank"]  # a negative scale reverses it


def test_natural_cut_keeps_the_upper_tail_below_p():
    rng = np.random.default_rng(0)
    w = rng.laplace(0, 1, (5, 200))
    fit = ald_fit_of(w)
    cut = sparsify.natural_cut(w, fit, 0.05)
    log_sf, log_two = sparsify.ald_tails(w, fit)
    assert np.array_equal(cut["one_sided"], np.exp(log_sf) < 0.05)
    assert np.array_equal(cut["two_sided"], np.exp(log_two) < 0.05)
    assert (w[cut["two_sided"]] < 0).any() and (w[cut["one_sided"]] > 0).all()
    for c in range(5):  # the upper cut is a top-n set of the row
        n = cut["one_sided"][c].sum()
        assert np.array_equal(cut["one_sided"][c], index_mask(top_k_indices(w[c:c + 1], n), 200)[0])


# --- global pruning ---------------------------------------------------------------------------

def test_global_pruning_keeps_exactly_the_fraction():
    rng = np.random.default_rng(0)
    scores = {"a": rng.normal(size=(7, 13)), "tied": np.round(rng.normal(size=(7, 13)))}
    fr = [0.5, 0.2, 0.1, 0.05, 0.02]
    for name, masks in sparsify.global_masks(scores, fr).items():
        for f, m in zip(fr, masks):
            assert m.sum() == int(np.floor(f * 91 + 0.5))
            assert scores[name][m].min() >= scores[name][~m].max()  # the highest ones
        assert all((masks[i] >= masks[i + 1]).all() for i in range(len(fr) - 1))  # nested


# --- bad input: errors that name the key ------------------------------------------------------

def test_grid_rules():
    assert sparsify.resolve_grid(None, 12) == [1, 2, 3, 5, 8, 10]  # default: above D dropped
    assert sparsify.resolve_grid(None, 2048) == list(sparsify.DEFAULT_K_GRID)
    assert sparsify.resolve_grid([5, 1, 5], 12) == [1, 5]
    with pytest.raises(FclensError, match=r"sparsify\.k_grid: \[13\] outside 1\.\.12 \(the "
                                          r"feature dimension of net\); allowed: integers"):
        sparsify.resolve_grid([1, 13], 12, "net")


@pytest.mark.parametrize("kw, match", [
    (dict(methods=["algorithm1", "lasso"]),
     r"^params\.yaml sparsify\.methods: unknown method 'lasso'; allowed: algorithm1, "),
    (dict(k_grid=[1, 99]), r"^params\.yaml sparsify\.k_grid: \[99\] outside 1\.\.12"),
    (dict(val_fraction=0.001), r"^params\.yaml sparsify\.val_fraction: 0\.001 of 60 training "
                               r"rows leaves 0 for validation"),
])
def test_run_checks_what_needs_the_data(kw, match):
    f, head = synthetic(60, 0), synthetic_head()
    with pytest.raises(FclensError, match=match):
        sparsify.run([f], [f], head, ald_fit_of(head.w), settings(**kw), 0)


@pytest.mark.parametrize("edit, match", [
    (lambda s: s.update(k_grid=[]), r"sparsify\.k_grid: List should have at least 1 item"),
    (lambda s: s.update(methods=[]), r"sparsify\.methods: List should have at least 1 item"),
    (lambda s: s.update(methods=["random", ""]), r"sparsify\.methods\.1: String should have at "
                                                 r"least 1 character"),
    (lambda s: s["elastic_net"].update(alpha=1.01), r"sparsify\.elastic_net\.alpha: Input should "
                                                    r"be less than or equal to 1"),
    (lambda s: s["elastic_net"].update(alpha=0.0), r"sparsify\.elastic_net\.alpha: Input should "
                                                   r"be greater than 0"),
    (lambda s: s.update(val_fraction=1.0), r"sparsify\.val_fraction: Input should be less than 1"),
    (lambda s: s.update(global_fractions=[0.5, 0.0]), r"sparsify\.global_fractions\.1: Input "
                                                      r"should be greater than 0"),
    (lambda s: s["csg"].update(penalty_min=1.0, penalty_max=0.1), r"sparsify\.csg: .*penalty_min "
                                                                  r"1\.0 exceeds penalty_max"),
    (lambda s: s.update(models=["cifar_resnet20", "nope"]), r"sparsify\.models: unknown feature "
                                                            r"model 'nope'"),
    (lambda s: s.update(methods=["random", "random"]), r"sparsify: methods .* lists a value twice"),
])
def test_params_errors_name_the_key(tmp_path, edit, match):
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(p["sparsify"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    with pytest.raises(FclensError, match=match):
        load_params(tmp_path / "params.yaml")


def test_method_names_are_checked_against_the_registry(tmp_path):
    """params.yaml may name any method; the stage checks the names against the registry before
    any work (core never imports analysis)."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["sparsify"]["methods"] = ["top_abs_weight", "magic"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    methods = load_params(tmp_path / "params.yaml").sparsify.methods
    with pytest.raises(FclensError, match=r"^params\.yaml sparsify\.methods: unknown method "
                                          r"'magic'; allowed: algorithm1, top_signed_weight, "):
        sparsify.check_methods(methods)
    sparsify.check_methods(ALL)


def test_params_section_defaults_run_every_registered_method():
    p = load_params(ROOT / "params.yaml")
    assert p.sparsify.methods == ALL and p.sparsify.elastic_net.alpha == 0.99
    assert Sparsify().methods == ALL  # the section's default: the whole registry, in its order
    assert len(registry.csg.penalties(p.sparsify.csg)) == p.sparsify.csg.n_penalties
    assert set(p.sparsify.models) <= set(p.feature_models)


# --- the whole run: the metrics contract, the plots, the report -------------------------------

@pytest.fixture(scope="module")
def result():
    head = synthetic_head()
    train = synthetic(600, 0)
    batches = [Features(train.x[i:i + 256], train.labels[i:i + 256], train.preds[i:i + 256])
               for i in range(0, 600, 256)]
    infl = influential_indices([train], C, 5, 5)
    return sparsify.run(batches, [synthetic(300, 1)], head, ald_fit_of(head.w), settings(), 0,
                        infl, "synthetic")


def test_metrics_follow_the_contract(result):
    m = result.metrics
    ks = [1, 2, 5, 12]
    assert m["k_grid"] == ks and 0.9 < m["dense_acc"] <= 1
    assert list(m["methods"]) == ALL
    for name, v in m["methods"].items():
        assert v["k"] == ks and len(v["acc"]) == len(v["acc_refit"]) == len(v["nec"]) == 4
        assert len(v["union_size"]) == 4 and "auc" in v and "k_at_95" in v
        if name not in ("elastic_net", "csg"):
            assert v["nec"] == [float(k) for k in ks]
    assert len(m["methods"]["random"]["acc_std"]) == 4
    top = m["methods"]["top_signed_weight"]
    assert top["auc"] == pytest.approx(np.mean(top["acc_refit"]))
    assert top["acc"][1] == pytest.approx(1.0)  # the true support, original weights
    assert top["acc"][-1] == m["dense_acc"] and top["acc_refit"][-1] == m["dense_refit_acc"]
    assert m["best_method_at_k5"] in set(m["methods"]) - {"random"}
    en = m["elastic_net"]
    assert {"selected_nec", "selected_acc", "lambda"} <= set(en) and en["subsampled"] is False
    assert m["csg"]["whole_network"] is None and len(m["csg"]["jaccard_vs_algorithm1"]) == 4
    for side in ("one_sided", "two_sided"):
        assert {"mean_k", "acc", "acc_refit", "acc_top_signed_same_k"} <= set(
            m["ald_natural_cut"][side])
    for g in ("magnitude", "ald_tail", "contribution"):
        assert m["global"][g]["fraction"] == pytest.approx([0.5, 0.2, 0.1], abs=1 / 72)
        assert len(m["global"][g]["acc_refit"]) == 3
    assert m["equivalences"]["chain_tree_terminals"] and m["equivalences"]["ald_upper_tail_rank"]
    assert m["split"]["n_val"] == 120 and m["split"]["n_fit"] == 480
    assert m["algorithm1_vs_influential"]["k"] == 5
    assert result.timing["seconds"] > 0 and "seconds" not in str(m)
    assert len(result.rows) == 4 * len(m["methods"])


def test_sparse_heads_table_holds_the_scored_heads(result):
    """The refit heads per grid k and the elastic net's selected head, whole (C, D): their
    accuracy on the test batch is the accuracy the metrics report for them."""
    h, m = result.heads, result.metrics
    test = synthetic(300, 1)
    names = sorted(set(h["head"]))
    assert "algorithm1_refit" in names and "elastic_net_selected" in names
    assert "random_refit" not in names  # controls are not heads anyone attacks

    def head_of(name: str, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        rows = [i for i, n in enumerate(h["head"]) if n == name and (k is None or h["k"][i] == k)]
        assert [h["class_index"][i] for i in rows] == list(range(C))
        return np.stack([h["weight"][i] for i in rows]), np.array([h["bias"][i] for i in rows])

    w, b = head_of("algorithm1_refit", 5)
    assert ((w != 0).sum(1) <= 5).all()
    alg = m["methods"]["algorithm1"]
    acc = float(((test.x @ w.T + b).argmax(1) == test.labels).mean())
    assert acc == pytest.approx(alg["acc_refit"][alg["k"].index(5)], abs=1e-6)
    w, b = head_of("elastic_net_selected")
    acc = float(((test.x @ w.T + b).argmax(1) == test.labels).mean())
    assert acc == pytest.approx(m["elastic_net"]["selected_acc"], abs=1e-6)
    assert (w != 0).sum(1).mean() == pytest.approx(m["elastic_net"]["selected_nec"])


def test_run_is_deterministic_by_seed(result):
    head = synthetic_head()
    train = synthetic(600, 0)
    batches = [Features(train.x[i:i + 256], train.labels[i:i + 256], train.preds[i:i + 256])
               for i in range(0, 600, 256)]
    again = sparsify.run(batches, [synthetic(300, 1)], head, ald_fit_of(head.w), settings(), 0,
                         influential_indices([train], C, 5, 5), "synthetic")
    assert again.metrics == result.metrics


# --- a new method: one module with `select`, one line in methods.METHODS ----------------------

def select_first_k(ctx: sparsify.Context) -> sparsify.Sets:
    """What a file methods/first_k.py would hold: every class keeps features 0..k-1."""
    order = np.tile(np.arange(ctx.head.dim), (ctx.head.n_classes, 1))  # (C, D)
    return sparsify.per_k(sparsify.first_k(order, ctx.ks))


def test_a_new_method_is_one_module_and_one_registry_line(monkeypatch):
    monkeypatch.setitem(registry.METHODS, "first_k", select_first_k)  # the registry line
    head, test = synthetic_head(), synthetic(300, 1)
    sparsify.check_methods(["first_k"])  # the stage's check knows it now
    r = sparsify.run([synthetic(600, 0)], [test], head, ald_fit_of(head.w),
                     settings(methods=["first_k", "top_signed_weight"]), 0)
    m = r.metrics
    assert list(m["methods"]) == ["first_k", "top_signed_weight"]
    v = m["methods"]["first_k"]
    assert v["nec"] == [1.0, 2.0, 5.0, 12.0] and v["union_size"] == [1, 2, 5, 12]
    for i, k in enumerate(m["k_grid"]):  # no refit: the original weights on features 0..k-1
        logits = test.x[:, :k] @ head.w[:, :k].T + head.b
        assert v["acc"][i] == pytest.approx(float((logits.argmax(1) == test.labels).mean()))
    assert v["acc"][-1] == m["dense_acc"] and v["acc_refit"][-1] == m["dense_refit_acc"]
    assert v["acc"][0] < 0.9 < m["methods"]["top_signed_weight"]["acc"][1]  # a weak method
    assert [row["k"] for row in r.rows if row["method"] == "first_k"] == m["k_grid"]
    assert m["elastic_net"] is None and m["csg"]["head_only"] is False  # contract keys kept
    monkeypatch.delitem(registry.METHODS, "first_k")
    with pytest.raises(FclensError, match=r"unknown method 'first_k'"):
        sparsify.check_methods(["first_k"])


def _write_outputs(root: Path, model: str, r: sparsify.Result) -> None:
    io.write_json(root / f"metrics/{model}/sparsify.json", r.metrics, digits=5)
    io.write_json(root / f"metrics/timing/sparsify@{model}.json", r.timing, digits=3)
    studies.plot_sparsify(r.metrics, model, root / f"plots/{model}/sparsify.png")
    studies.plot_global_pruning(r.metrics, model, root / f"plots/{model}/global_pruning.png")
    io.write_csv(root / f"plots/{model}/sparsify.csv", r.rows)


def test_report_section_from_the_metrics(tmp_path, result):
    from test_report import make_tree

    inp = make_tree(tmp_path)
    assert "Not run" in "\n".join(section_sparsify(inp))  # sparsify.models empty
    _write_outputs(tmp_path, "net_a", result)
    inp = dataclasses.replace(inp, sparsify_models=["net_a"])
    md = build_markdown(inp)
    sec = md.split("## Sparse heads")[1].split("\n## ")[0]
    m = result.metrics
    best = m["best_method_at_k5"]
    assert f"at k = 5 **{best}**" in sec and "### net_a" in sec
    assert "one method, shown once" in sec and "was not run" in sec
    assert "../plots/net_a/sparsify.png" in sec and "../plots/net_a/global_pruning.png" in sec
    dense = f"{100 * m['dense_acc']:.2f}%"
    assert f"Dense head: {dense}" in sec
    assert re.search(r"sparsify@net_a \| \d+ s for all methods", md)
    (tmp_path / "metrics/net_a/sparsify.json").unlink()
    with pytest.raises(FclensError, match="metrics/net_a/sparsify.json"):
        build_markdown(inp)


@pytest.mark.slow
def test_equivalences_on_the_real_resnet20_weights():
    data = ROOT / "data/cifar_resnet20"
    head = tables.read_fc_weights(data / "fc_weights.parquet")
    f = tables.read_frame(data / "ald_params.parquet", tables.ALD_PARAMS, head.n_classes)
    e = sparsify.equivalences(head.w, {k: f[k].to_numpy() for k in ("loc", "scale", "kappa")},
                              sparsify.resolve_grid(None, head.dim))
    assert e == {"chain_tree_terminals": True, "ald_upper_tail_rank": True,
                 "ald_classes_checked": head.n_classes}
