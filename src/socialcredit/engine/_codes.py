"""Integer codes for texts, made once per ledger, so that the engine groups and sums on integers.

Codes are drafted from the texts' 64-bit hashes, then checked: every text is compared with the
distinct text of its code. Where two different texts share a hash the check fails, and the exact
(slower) coding is used instead.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True, eq=False)
class TextCodes:
    """A code per value: `values == distinct.gather(codes)`; `ordered` is `distinct` sorted."""

    codes: np.ndarray  # int32, one per value
    distinct: pl.Series  # the distinct values, in code order
    order: np.ndarray  # the codes in sorted order: ordered == distinct.gather(order)
    ordered: pl.Series


@dataclass(frozen=True, eq=False)
class Draft:
    """Codes from the values' hashes, not yet checked (`finish_codes`)."""

    values: pl.Series
    codes: np.ndarray  # int32, one per value
    first: np.ndarray  # the first row of each code
    hashes: np.ndarray  # uint64, one per value


def text_codes(values: pl.Series) -> TextCodes:
    """Code the values: `draft_codes`, then `finish_codes`, or `exact_codes` where these cannot."""
    draft = draft_codes(values)
    return (finish_codes(draft) if draft is not None else None) or exact_codes(values)


def draft_codes(values: pl.Series) -> Draft | None:
    """Codes from the values' 64-bit hashes (numbered in no particular order); None for a series
    with nulls, or with none or 2**31 or more values (`exact_codes` codes those)."""
    if values.null_count() or len(values) == 0 or len(values) >= 2**31:
        return None
    from socialcredit.engine import _kernels

    hashes = text_hashes(values)
    codes, first = _kernels.factorise(hashes)
    return Draft(values, codes, first, hashes)


def finish_codes(draft: Draft, pool: Executor | None = None) -> TextCodes | None:
    """Check a draft (in `pool` where given) while sorting its distinct values; None where two
    different values share a hash."""
    from socialcredit.engine import _kernels

    distinct = draft.values.gather(draft.first)
    checked = pool.submit(_same, draft.values, draft.codes, distinct) if pool is not None else None
    ordered = distinct.sort()
    order = np.empty(len(distinct), dtype=np.int64)
    order[_kernels.ranks(draft.hashes[draft.first], text_hashes(ordered))] = np.arange(len(distinct))
    same = checked.result() if checked is not None else _same(draft.values, draft.codes, distinct)
    return TextCodes(draft.codes, distinct, order, ordered) if same else None


def _same(values: pl.Series, codes: np.ndarray, distinct: pl.Series) -> bool:
    """Whether every value equals the distinct value of its code."""
    return pl.DataFrame({"value": values, "code": codes}).select(
        (pl.col("value") == pl.lit(distinct).gather(pl.col("code"))).all()).item()


def exact_codes(values: pl.Series) -> TextCodes:
    """Codes in the values' sorted order, by a join on the texts themselves."""
    distinct = values.unique().sort()
    codes = (pl.DataFrame({"value": values})
             .join(pl.DataFrame({"value": distinct}).with_row_index("code"), on="value", how="left",
                   maintain_order="left", nulls_equal=True)["code"])
    order = np.arange(len(distinct), dtype=np.int64)
    return TextCodes(codes.to_numpy().astype(np.int32), distinct, order, distinct)


def text_hashes(values: pl.Series) -> np.ndarray:
    """The values' 64-bit hashes (uint64)."""
    return values.hash().to_numpy()
