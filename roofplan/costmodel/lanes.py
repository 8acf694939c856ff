"""Distinct rows of a few integer lanes: evaluate a term once per distinct value and gather it back.

A planner's configurations repeat a handful of values per knob (tp in {1, 2, 4, 8}, three sequence
lengths, ...), so a term that reads only a few knobs -- the op table of one decoder layer reads the
micro-batch, the sequence length and the tp/cp/ep degrees -- has a few hundred distinct inputs in a
million lanes. Evaluating it on one representative lane per distinct row and indexing the result
back gives every lane exactly the numbers it would have computed itself (numpy arithmetic is
elementwise), at a fraction of the cost.

:func:`distinct_rows` groups without a sort where it can: each column is turned into dense codes
with one ``bincount`` over its value range, the codes are combined in mixed radix and densified the
same way; only very wide value ranges fall back to ``np.unique``.
"""

from __future__ import annotations

import numpy as np

#: Widest value range (max - min + 1) a column or the combined code is densified by ``bincount``;
#: wider ones go through ``np.unique`` (a sort).
BINCOUNT_RANGE = 1 << 20
#: Value ranges up to this width are coded by their offset from the minimum, without densifying.
NARROW = 64


def _codes(col: np.ndarray, dense: bool = False) -> tuple[np.ndarray, int]:
    """(code of each lane in 0..k-1, k) for an integer or boolean column: the offset from the
    column's minimum where its range is narrow (``NARROW``) and ``dense`` is not asked, else dense
    codes of the values present."""
    col = np.asarray(col)
    if col.dtype == bool:
        col = col.view(np.int8)
    lo, hi = int(col.min()), int(col.max())
    off = col - lo if lo else col
    if hi - lo < NARROW and not dense:
        return off, hi - lo + 1
    if hi - lo < BINCOUNT_RANGE:
        present = np.bincount(off, minlength=hi - lo + 1) > 0
        if bool(present.all()):
            return off, hi - lo + 1
        remap = np.cumsum(present) - 1
        return remap[off], int(remap[-1]) + 1
    values, codes = np.unique(col, return_inverse=True)
    return codes.reshape(-1), len(values)


def distinct_rows(columns) -> tuple[np.ndarray, np.ndarray]:
    """(one representative lane of each distinct row, distinct row of each lane) of the integer or
    boolean ``columns`` (equal-length 1-D arrays). ``x[rep][row] == x`` for every column ``x``."""
    columns = [np.asarray(c) for c in columns]
    n = len(columns[0])
    if n == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    code, radix = np.zeros(n, dtype=np.int64), 1  # the code of the columns so far, in 0..radix-1
    for col in columns:
        c, k = _codes(col)
        if k == 1:
            continue  # the same value in every lane
        if radix * k >= BINCOUNT_RANGE:
            code, radix = _codes(code, dense=True)  # keep the combined code small
        code, radix = (code * k + c if radix > 1 else c.astype(np.int64, copy=False)), radix * k
    row, groups = _codes(code, dense=True)
    rep = np.empty(groups, dtype=np.intp)
    rep[row] = np.arange(n)  # any lane of a group represents it (they agree on every column)
    return rep, row
