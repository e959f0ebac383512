"""The registry of fitted families: name -> Family, in the order ties are broken (first wins).

Adding a family is one file in this folder that builds a `Family` and one line below.
"""

from __future__ import annotations

from fclens.analysis.ald.families import ald, gaussian, laplace, logistic, student_t
from fclens.analysis.ald.family import Family

FAMILIES: dict[str, Family] = {f.name: f for f in (
    ald.FAMILY,
    gaussian.FAMILY,
    laplace.FAMILY,
    student_t.FAMILY,
    logistic.FAMILY,
)}
