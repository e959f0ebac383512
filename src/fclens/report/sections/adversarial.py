"""The report's adversarial section, from metrics/<m>/adversarial.json and
plots/adversarial/<m>/{accuracy,examples}.png (stage adversarial, one per `adversarial.models`).

Every number and every verdict is read or computed from the metrics, never typed.
"""

from __future__ import annotations

from fclens.report.doc import Inputs
from fclens.report.fmt import figure, num, pct, table

INTRO = (
    "The lecture's sixth way of looking at a network. L-inf PGD (Madry et al. 2018) in pixel "
    "space: a random start in the ball, then signed-gradient steps on the cross-entropy (the "
    "step size and count of each model below); an image counts as broken at the first "
    "misclassified iterate, which is kept. Robust accuracy counts every image (a clean mistake "
    "is broken at every ε). A stronger attack (foolbox's L-inf FMN, Pintor et al. 2021) then "
    "runs on what PGD left correct. Because the head is linear, the margin change of a broken "
    "image with true class y and adversarial class t is exactly Σᵢ cᵢ with cᵢ = (W[y,i] − "
    "W[t,i])·(hᵢ(x_adv) − hᵢ(x)), at the first misclassified iterate. k90: the fewest features, "
    "most negative cᵢ first, that carry 90% of it. Shares are medians over broken images; each "
    "has its exact control in brackets: a random feature set of the same size carries |S|/D in "
    "expectation; the terminal rate's control is the exact chance that a random set of the "
    "terminals' size meets the top-k90 features. Sparse heads: each attacked by its own PGD; "
    "transfer: the share of the dense head's adversarial images (full PGD, no early stop) that "
    "also fool the sparse head.")


def _opt(x, f=pct) -> str:
    return "n/a" if x is None else f(x)


def _sparse_sentence(a: dict) -> str:
    heads = a["sparse_heads"]
    if not heads:
        return ("No sparse head attacked (`adversarial.sparse_models` does not list this "
                "model).")
    eps = a["eps"]
    parts = []
    for name, h in heads.items():
        diff = [s - d for s, d in zip(h["acc"], a["acc"])]
        parts.append(f"`{name}` (NEC {num(h['nec'])}, clean {pct(h['clean_acc'])}) keeps "
                     + ", ".join(f"{pct(x)} at {num(e)}" for x, e in zip(h["acc"], eps))
                     + f" (dense: {', '.join(pct(x) for x in a['acc'])}); "
                     f"largest gap to the dense head {num(max(diff, key=abs), '+.3f')}")
    return "Sparse heads under their own PGD: " + "; ".join(parts) + "."


def section_adversarial(inp: Inputs) -> list[str]:
    if not inp.adversarial_models:
        return ["Not run: `adversarial.models` is empty.", ""]
    lines = [INTRO, ""]
    for m in inp.adversarial_models:
        a = inp.json(f"metrics/{m}/adversarial.json")
        st = a["strong"]
        heads = a["sparse_heads"]
        lines += [f"### {m}", "",
                  f"{a['n_images']} test images (the first {a['attack']['n_per_class']} of "
                  f"every class), clean accuracy {pct(a['clean_acc'])}; PGD "
                  f"{a['attack']['steps']} steps; D = {a['feature_dim']}, Algorithm-1 sets of "
                  f"{a['algorithm1_size']}.", ""]
        head = ["ε (/255)", "accuracy", *[f"`{h}` acc (transfer)" for h in heads],
                "broken", "k90 median", "Algorithm-1 share (random)",
                "elastic-net share (random)", "terminal in top-k90 (random)"]
        rows = []
        for i, e in enumerate(a["eps"]):
            rows.append([num(e), pct(a["acc"][i]),
                         *[f"{pct(h['acc'][i])} ({_opt(h['transfer_rate'][i])})"
                           for h in heads.values()],
                         str(a["n_broken"][i]), _opt(a["k90_median"][i], num),
                         f"{_opt(a['margin_share_algorithm1'][i])} "
                         f"({_opt(a['margin_share_algorithm1_random'][i])})",
                         f"{_opt(a['margin_share_elastic_net'][i])} "
                         f"({_opt(a['margin_share_elastic_net_random'][i])})",
                         f"{_opt(a['terminal_in_k90_rate'][i])} "
                         f"({_opt(a['terminal_in_k90_rate_random'][i])})"])
        lines += table(head, rows)
        att = a["attack"]
        if st["n_attacked"] == 0:
            at_strong = (f"PGD left no image correct at ε = {num(st['eps'])}/255, so FMN had "
                         f"nothing to attack there (no evidence either way)")
        else:
            at_strong = (f"FMN broke {st['n_broken_extra']} of the {st['n_attacked']} images "
                         f"PGD left correct at ε = {num(st['eps'])}/255 (accuracy "
                         f"{pct(st['acc_pgd'])} → {pct(a['acc_strong'])})")
        check = (f"As a check where PGD leaves images, at ε = {num(st['check_eps'])}/255 FMN "
                 f"broke {st['check_n_broken_extra']} of the first {st['check_n_attacked']} "
                 f"images PGD left correct (each one it breaks is one PGD missed).")
        lines += [f"PGD: {att['steps']} steps of {num(att['step_factor'])}·ε/{att['steps']}, "
                  f"random start, early stop. {at_strong}. {check}", "",
                  _sparse_sentence(a), "",
                  *figure(inp.png(f"plots/adversarial/{m}/accuracy.png"),
                          f"{m}: accuracy against ε, dense and sparse heads"),
                  *figure(inp.png(f"plots/adversarial/{m}/examples.png"),
                          f"{m}: broken examples at ε = {num(a['examples_eps'])}/255, the "
                          f"margin terms that moved most, and the top training images of the "
                          f"most negative one")]
    return lines
