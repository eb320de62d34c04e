"""The data a feature pipeline reads, indexed once: merchant and category codes, sorted event streams."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aidg.domain import DEAL_TERMS, OverrideField, OverrideType
from aidg.errors import DataError, MissingTableError
from aidg.features.panel import EventStream, to_seconds

OVERRIDE_TYPES: list[str] = list(OverrideType.__args__)  # type: ignore[attr-defined]
OVERRIDE_FIELDS: list[str] = list(OverrideField.__args__)  # type: ignore[attr-defined]
FIELD_SCALE = {"discount_pct": 0.2, "price": 50.0, "duration_days": 30.0, "category_id": 1.0}
PRICE_SCALE = 7.0  # log1p(price) / 7: a 1,000 price maps to ≈ 1
UPLIFT_CLIP = (-1.0, 3.0)
DAY = 86_400
REQUIRED = ("merchants", "categories", "deals")


def log_price(price: np.ndarray) -> np.ndarray:
    return np.asarray(np.log1p(np.maximum(np.asarray(price, dtype=float), 0.0)) / PRICE_SCALE)


@dataclass
class FeatureContext:
    """Tables coded for fast point-in-time feature building (build with :meth:`from_tables`)."""

    tables: dict[str, pd.DataFrame]
    merchant_ids: np.ndarray  # code -> id
    merchant_code: pd.Series  # id -> code
    category_ids: np.ndarray
    category_code: pd.Series
    as_of: pd.Timestamp
    deals: pd.DataFrame = field(repr=False)
    deal_stream: EventStream = field(repr=False)
    proposals: pd.DataFrame = field(repr=False)
    proposal_stream: EventStream = field(repr=False)
    overrides: pd.DataFrame = field(repr=False)
    override_stream: EventStream = field(repr=False)

    @property
    def n_categories(self) -> int:
        return len(self.category_ids)

    @staticmethod
    def from_tables(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp | str | None = None) -> FeatureContext:
        """Index the tables. ``as_of`` defaults to the day after the latest event in the data."""
        missing = [t for t in REQUIRED if t not in tables]
        if missing:
            raise MissingTableError(f"training needs the tables {', '.join(REQUIRED)}; missing {', '.join(missing)}")
        merchants = tables["merchants"]
        if len(merchants) == 0:
            raise DataError("the merchants table is empty: there is nothing to learn a profile for")
        mids = merchants.merchant_id.astype(str).to_numpy(dtype=object)
        mcode = pd.Series(np.arange(len(mids)), index=mids)
        cids = tables["categories"].category_id.astype(str).to_numpy(dtype=object)
        ccode = pd.Series(np.arange(len(cids)), index=cids)
        deals = tables["deals"].copy()
        if as_of is None:
            latest = [pd.Timestamp(deals.started_at.max())] if len(deals) else []
            as_of = (max(latest) + pd.Timedelta(days=1)).normalize() if latest else pd.Timestamp.now().normalize()
        as_of = pd.Timestamp(as_of)
        deals = deals[deals.merchant_id.isin(mcode.index)].reset_index(drop=True)
        deals["m"] = mcode.loc[deals.merchant_id].to_numpy()
        deals["c"] = deals.category_id.map(ccode).fillna(-1).astype(int).to_numpy()
        deals["t"] = to_seconds(deals.started_at)
        known_at = deals.gp30_known_at if "gp30_known_at" in deals else deals.started_at + pd.Timedelta(days=30)
        deals["t_known"] = to_seconds(known_at)
        deals["t_conv"] = deals["t"] + 3 * DAY
        list_price = merchants.set_index("merchant_id").list_price.astype(float) if "list_price" in merchants else None
        lp = list_price.reindex(deals.merchant_id).to_numpy() if list_price is not None else deals.price.to_numpy()
        deals["log_size"] = np.log(np.maximum(deals.price.to_numpy(float), 1e-3) / np.maximum(lp, 1e-3))
        proposals = tables.get("proposals", pd.DataFrame(columns=["proposal_id", "merchant_id", "at"])).copy()
        proposals = proposals[proposals.merchant_id.isin(mcode.index)].reset_index(drop=True)
        proposals["m"] = mcode.loc[proposals.merchant_id].to_numpy() if len(proposals) else []
        if len(proposals):
            proposals["c"] = proposals.category_id.map(ccode).fillna(-1).astype(int).to_numpy()
            known = proposals.approved_at.fillna(proposals["at"]) if "approved_at" in proposals else proposals["at"]
            proposals["t"] = to_seconds(proposals["at"])
            proposals["t_known"] = to_seconds(known)
            lpp = list_price.reindex(proposals.merchant_id).to_numpy() if list_price is not None else 1.0
            proposals["log_size"] = np.log(np.maximum(proposals.price.to_numpy(float), 1e-3) / np.maximum(lpp, 1e-3))
        else:
            proposals["t"] = proposals["t_known"] = np.array([], dtype=np.int64)
        overrides = _override_rows(tables, mcode, merchants)
        return FeatureContext(
            tables=tables,
            merchant_ids=mids,
            merchant_code=mcode,
            category_ids=cids,
            category_code=ccode,
            as_of=as_of,
            deals=deals,
            deal_stream=EventStream(deals.m.to_numpy(), deals.t.to_numpy()),
            proposals=proposals,
            proposal_stream=EventStream(proposals.m.to_numpy(np.int64), proposals.t_known.to_numpy(np.int64)),
            overrides=overrides,
            override_stream=EventStream(overrides.m.to_numpy(np.int64), overrides.t.to_numpy(np.int64)),
        )

    def codes(self, merchant_ids: list[str] | np.ndarray | pd.Series) -> np.ndarray:
        """The codes of ``merchant_ids`` (a DataError names unknown ones). Through the index's hash table: cost in
        the ids asked for, not in the merchants there are (``isin`` over an Arrow string index walked all 40k of
        the memo's scale in Python on every call: 97 % of scoring one merchant's candidates)."""
        ids = pd.Index(np.asarray(merchant_ids, dtype=object))
        index = self.merchant_code.index
        if not index.is_unique:  # a broken merchants table: the slow path says what it finds
            unknown = ids[~ids.isin(index)]
            if len(unknown):
                raise DataError(f"unknown merchant id(s): {', '.join(map(str, unknown[:5]))}")
            return np.asarray(self.merchant_code.loc[ids].to_numpy(), dtype=np.int64)
        pos = index.get_indexer(ids)
        if (pos < 0).any():
            raise DataError(f"unknown merchant id(s): {', '.join(map(str, ids[pos < 0][:5]))}")
        return np.asarray(self.merchant_code.to_numpy()[pos], dtype=np.int64)

    def one_hot(self, codes: np.ndarray) -> np.ndarray:
        """Category one-hot (codes < 0, unknown categories, give all zeros)."""
        out = np.zeros((len(codes), self.n_categories), dtype=np.float32)
        ok = codes >= 0
        out[np.flatnonzero(ok), codes[ok]] = 1.0
        return out


def _override_rows(tables: dict[str, pd.DataFrame], mcode: pd.Series, merchants: pd.DataFrame) -> pd.DataFrame:
    """Overrides with their merchant, the edited terms and the outcome, plus each rep's earlier habits."""
    cols = [
        "m",
        "t",
        "type",
        "field",
        "delta",
        "rep_id",
        "approved",
        "deal_id",
        "discount",
        "log_price",
        "duration",
        "c",
        "is_account_rep",
    ]
    ov = tables.get("overrides")
    if ov is None or len(ov) == 0:
        empty = pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
        empty = empty.assign(
            m=pd.Series(dtype=np.int64),
            t=pd.Series(dtype=np.int64),
            type=pd.Series(dtype=np.int64),
            field=pd.Series(dtype=np.int64),
            c=pd.Series(dtype=np.int64),
            rep_id=pd.Series(dtype=object),
            deal_id=pd.Series(dtype=object),
        )
        for i in range(len(OVERRIDE_TYPES)):
            empty[f"rep_prev_{i}"] = pd.Series(dtype=float)
        return empty
    ov = ov.copy()
    props = tables.get("proposals")
    deals = tables["deals"].set_index("deal_id")
    merchant = pd.Series([None] * len(ov), dtype=object)
    terms = pd.DataFrame(index=ov.index, columns=["discount_pct", "price", "duration_days", "category_id", "approved"])
    if props is not None and "proposal_id" in ov:
        p = props.set_index("proposal_id").reindex(ov.proposal_id)
        merchant = pd.Series(p.merchant_id.to_numpy(dtype=object))
        for c in ["discount_pct", "price", "duration_days", "category_id", "approved"]:
            terms[c] = p[c].to_numpy()
    d = deals.reindex(ov.deal_id)
    merchant = merchant.where(merchant.notna(), pd.Series(d.merchant_id.to_numpy(dtype=object)))
    for c in DEAL_TERMS:
        terms[c] = terms[c].where(terms[c].notna(), d[c].to_numpy())
    terms["approved"] = terms["approved"].where(terms["approved"].notna(), ov.deal_id.notna())
    keep = merchant.notna().to_numpy() & merchant.isin(mcode.index).to_numpy()
    ov, terms, merchant = ov[keep].reset_index(drop=True), terms[keep].reset_index(drop=True), merchant[keep]
    account = merchants.set_index("merchant_id").rep_id if "rep_id" in merchants else None
    out = pd.DataFrame(
        {
            "m": mcode.loc[merchant.to_numpy()].to_numpy(np.int64),
            "t": to_seconds(ov["at"]),
            "type": ov.override_type.map({t: i for i, t in enumerate(OVERRIDE_TYPES)})
            .fillna(-1)
            .astype(int)
            .to_numpy(),
            "field": ov.field.map({f: i for i, f in enumerate(OVERRIDE_FIELDS)}).fillna(-1).astype(int).to_numpy(),
            "delta": (ov.delta.astype(float) / ov.field.map(FIELD_SCALE).fillna(1.0)).clip(-3, 3).to_numpy(),
            "rep_id": ov.rep_id.astype(str).to_numpy(dtype=object),
            "approved": terms.approved.astype(float).to_numpy(),
            "deal_id": ov.deal_id.to_numpy(dtype=object),
            "discount": terms.discount_pct.astype(float).to_numpy(),
            "log_price": log_price(terms.price.astype(float).to_numpy()),
            "duration": terms.duration_days.astype(float).to_numpy() / 60.0,
            "c": terms.category_id.map(
                pd.Series(np.arange(len(tables["categories"])), index=tables["categories"].category_id.astype(str))
            )
            .fillna(-1)
            .astype(int)
            .to_numpy(),
            "is_account_rep": (ov.rep_id.to_numpy(dtype=object) == account.reindex(merchant.to_numpy()).to_numpy())
            if account is not None
            else np.zeros(len(ov), dtype=bool),
        }
    )
    # each rep's override-type counts strictly before each override (point-in-time habits)
    out = out.sort_values("t", kind="stable").reset_index(drop=True)
    onehot = np.zeros((len(out), len(OVERRIDE_TYPES)))
    ok = out.type.to_numpy() >= 0
    onehot[np.flatnonzero(ok), out.type.to_numpy()[ok]] = 1
    cum = pd.DataFrame(onehot).groupby(out.rep_id.to_numpy()).cumsum().to_numpy() - onehot
    for i in range(len(OVERRIDE_TYPES)):
        out[f"rep_prev_{i}"] = cum[:, i]
    return out
