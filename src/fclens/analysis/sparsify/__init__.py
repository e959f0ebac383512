"""Sparse heads: which features does each class need?

Every method gives each class c a feature set S_c; the sparse head keeps W[c, j] for j in S_c
only (W * mask, as `decompose` scores Algorithm 1's sets). One protocol serves every method:

- A validation part is carved once from the training split by seed; the rest is the fit part
  (`rows`). Every selection and every refit uses the fit part; only elastic_net's rule for
  choosing its lambda reads the validation part; the test split is only ever scored.
- For each method and k of the grid: test accuracy without refit (the original weights, masked;
  elastic_net: glm-saga's own weights) and with refit (the masked head retrained on the fit part
  as in decompose, all masks in one batched training, deterministic by seed) (`bank`).

The methods (`methods/`, one module each, registered by name in `methods.METHODS`) share one
shape, `select(ctx: Context) -> Sets` (`selection`): algorithm1, top_signed_weight (= the chain
tree's '+' terminals = the ALD upper-tail rank), top_abs_weight, top_contribution, random,
elastic_net (glm-saga, `glm_saga`) and csg (class-specific gates); each module's docstring says
what it selects.

ALD's own cut (`ald_cut`): per class, the features whose upper-tail probability under the
class's fitted ALD is below p (one-sided), or whose two-sided tail probability 2 min(F, 1 - F)
is (both signs). Global pruning (`global_pruning`) keeps a fraction of all C x D weights by |W|,
by the two-sided ALD tail probability (each class scaled by its own fit) or by |contribution|.

Memory: every pass over the features is a loop over `Features` batches of a re-iterable source
(a `streaming.FeatureTable`, or a list `[features]`), except elastic_net, whose solver holds its
rows in memory (on a seeded subsample above `max_rows`).
"""

from fclens.analysis.sparsify.ald_cut import ald_tails, equivalences, natural_cut
from fclens.analysis.sparsify.bank import Bank, Point
from fclens.analysis.sparsify.glm_saga import EN_SELECT_DROP, EnPath, elastic_net_path
from fclens.analysis.sparsify.global_pruning import global_masks, global_scores
from fclens.analysis.sparsify.methods import METHODS
from fclens.analysis.sparsify.methods.algorithm1 import algorithm1_masks
from fclens.analysis.sparsify.methods.csg import csg_gates
from fclens.analysis.sparsify.methods.random import random_rankings
from fclens.analysis.sparsify.methods.top_contribution import contribution
from fclens.analysis.sparsify.rows import Part, carve_validation
from fclens.analysis.sparsify.run import DEFAULT_K_GRID, Result, check_methods, resolve_grid, run
from fclens.analysis.sparsify.selection import Context, Sets, first_k, per_k

__all__ = [
    "DEFAULT_K_GRID", "EN_SELECT_DROP", "METHODS", "Bank", "Context", "EnPath", "Part", "Point",
    "Result", "Sets", "algorithm1_masks", "ald_tails", "carve_validation", "check_methods",
    "contribution", "csg_gates", "elastic_net_path", "equivalences", "first_k", "global_masks",
    "global_scores", "natural_cut", "per_k", "random_rankings", "resolve_grid", "run",
]
