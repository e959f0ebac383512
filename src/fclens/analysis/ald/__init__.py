"""Asymmetric Laplace (ALD) maximum likelihood and honest comparison with other families.

All fits are vectorized over the rows of a (C, D) weight matrix (one row = one class). The
families are a registry (`families.FAMILIES`: one file each, see `family.Family`); the ALD's
exact MLE is derived in `families/ald.py`, the comparison and its metrics are in `compare.py`,
the shared Newton solver in `numerics.py`, row checks in `rows.py`, the figure's arrays in
`curves.py`.

Determinism. A row's fit, statistics and summary must not depend on the other rows, the batch
shape, the thread count or the BLAS library: the published metrics (best-family counts, medians to
4 digits) are compared across machines. So every computation here is elementwise or a reduction
along axis 1 of a C-contiguous (G, D) array (numpy sums each row on its own, pairwise), never a
matmul or a solve across rows. The iterative fits (Student-t, logistic) are per-row Newton
solvers: each row stops at its own tolerance and is then frozen, so its iterates are the same
whether it is fitted alone or among 1000 rows (tests/test_ald.py checks bit equality). Another
CPU can still differ in the last bits of exp/log (numpy's AVX2 and AVX-512 loops do); the
solvers end with one quadratic-regime Newton step and best_family treats AIC differences below
AIC_TIE_REL * n as ties, so such bits stay out of the rounded metrics (also tested).
"""

from fclens.analysis.ald.compare import (
    AIC_TIE_REL,
    best_family,
    compare_families,
    ks_ad,
    r2_log_sorted_abs,
    summary,
)
from fclens.analysis.ald.curves import class_curves, densities
from fclens.analysis.ald.families import FAMILIES
from fclens.analysis.ald.families.ald import ald_log_tails, ald_logpdf, ald_ppf, fit_ald
from fclens.analysis.ald.families.gaussian import fit_gaussian
from fclens.analysis.ald.families.laplace import fit_laplace
from fclens.analysis.ald.families.logistic import fit_logistic
from fclens.analysis.ald.families.student_t import fit_student_t
from fclens.analysis.ald.family import Family
from fclens.analysis.ald.rows import (
    BOUNDARY_LEFT,
    BOUNDARY_RIGHT,
    CONSTANT,
    DEGENERATE,
    NONFINITE,
    OK,
    TIES,
    TOO_FEW,
    row_status,
    tie_count,
)

__all__ = [
    "AIC_TIE_REL", "BOUNDARY_LEFT", "BOUNDARY_RIGHT", "CONSTANT", "DEGENERATE", "FAMILIES",
    "NONFINITE", "OK", "TIES", "TOO_FEW", "Family", "ald_log_tails", "ald_logpdf", "ald_ppf",
    "best_family", "class_curves", "compare_families", "densities", "fit_ald", "fit_gaussian",
    "fit_laplace", "fit_logistic", "fit_student_t", "ks_ad", "r2_log_sorted_abs", "row_status",
    "summary", "tie_count",
]
