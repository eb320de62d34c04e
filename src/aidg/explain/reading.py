"""What a reader sees first: the verdict against the current deal, and where the top-5 features come from.

The verdict is the first line of every explanation (``aidg explain``, the API's
generate and explanation answers, the dashboard). It compares the best variant
with the merchant's current deal by the score the variants are ranked by, so
it never contradicts the ranking: when no variant is expected to beat the
current deal it says so and recommends keeping it.

Top-5 features: the scorer's attention over the merchant's readable features is
often nearly flat (0.029–0.032 over ~35 features), and then its five heaviest
features say almost nothing. ``attention_concentration`` measures it: the
top-k's share of the readable attention ÷ the share k features would get under
uniform attention (1 = flat, k/… up to R/k when all of it is on k features).
Below ``explain.attention_flat_ratio`` (1.5 by default) the top five come from
the variant's integrated-gradients attributions instead, and the answer says
which source it used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

KEEP = "Keep the current deal"


def attention_concentration(attention: np.ndarray, readable: np.ndarray, k: int) -> float:
    """The top-``k`` readable tokens' share of the readable attention ÷ ``k / R`` (R readable tokens): 1 = flat."""
    a = np.asarray(attention, float)[readable]
    total = float(a.sum())
    if total <= 0 or len(a) == 0:
        return 1.0
    k = min(k, len(a))
    top = float(np.sort(a)[-k:].sum())
    return round(top / total / (k / len(a)), 4)


def top_features(
    attention_top: list[dict[str, Any]],
    attributions: list[dict[str, Any]] | None,
    concentration: float,
    flat_ratio: float,
) -> dict[str, Any]:
    """The top-5 to show: attention's when it is concentrated (≥ ``flat_ratio``) or no attributions exist, else the
    attributions'; with ``source`` and ``attention_concentration``."""
    flat = concentration < flat_ratio
    use_attr = flat and attributions is not None
    note = None
    if flat and not use_attr:
        note = "attention is nearly flat here and no attributions were computed for this variant: read it loosely"
    return {
        "source": "attributions" if use_attr else "attention",
        "attention_concentration": concentration,
        "attention_flat": flat,
        "features": list(attributions if use_attr else attention_top),  # type: ignore[arg-type]
        **({"note": note} if note else {}),
    }


def keep_verdict(text: str, expected_to_beat: bool | None = False) -> dict[str, Any]:
    """A verdict that recommends keeping the current deal, with its first line ``text``."""
    return {"keep_current": True, "variant_expected_to_beat_current": expected_to_beat, "best_variant": None,
            "text": text}  # fmt: skip


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def verdict(
    variants: Sequence[Mapping[str, Any]],
    current: Mapping[str, Any],
    chosen: Mapping[str, Any] | None = None,
    why_current: str | None = None,
) -> dict[str, Any]:
    """The first line: whether any of ``variants`` (scored rows; those the guard ``refused`` do not count) is expected
    to beat ``current`` (the current deal's scored row), and what was chosen (a served decision's ``chosen`` row and
    ``why_current``; None offline)."""
    candidates = [v for v in variants if v.get("score") is not None and v.get("type") != "current"]
    scored = [v for v in candidates if not v.get("refused")]  # a variant the safety guard refused is no option
    cur = current.get("score")
    if candidates and not scored:
        return keep_verdict(f"{KEEP}: the safety guard refused all {len(candidates)} variants")
    if not scored or cur is None:
        return keep_verdict(f"{KEEP}: no variant was scored")
    best = max(scored, key=lambda v: float(v["score"]))
    gain = float(best["score"]) - float(cur)
    keep = gain <= 0
    gp = (best.get("components") or {}).get("gp30_uplift")
    gp_cur = (current.get("components") or {}).get("gp30_uplift")
    gp_text = "" if gp is None or gp_cur is None else f", expected GP30 uplift {_pct(gp)} vs {_pct(gp_cur)}"
    if keep:
        text = (f"{KEEP}: none of the {len(scored)} variants is expected to beat it (best, variant "
                f"{best['variant']}: score {float(best['score']):.4f} vs the current deal's {float(cur):.4f}{gp_text})")
    else:
        text = (f"Variant {best['variant']} is expected to beat the current deal: score {float(best['score']):.4f} "
                f"vs {float(cur):.4f}{gp_text}")
    if chosen is not None:
        if chosen.get("type") == "current":
            text = f"{KEEP} (it was chosen): {why_current or 'no variant is expected to beat it'}"
        elif keep:
            text += f"; variant {chosen['variant']} is being tried to learn how this merchant responds (exploration)"
        elif chosen.get("variant") != best["variant"]:
            text += f"; variant {chosen['variant']} was chosen (the policy samples among likely winners)"
    keep_now = keep or (chosen is not None and chosen.get("type") == "current")
    return {"keep_current": keep_now, "variant_expected_to_beat_current": not keep, "text": text,
            "best_variant": best["variant"], "score_gain": round(gain, 5)}  # fmt: skip


def verdict_of_old_decision(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict of a decision logged before answers carried one (no current deal's score was kept)."""
    chosen = payload.get("chosen") or {}
    if chosen.get("type") == "current":
        text = f"{KEEP} (it was chosen): {payload.get('why_current') or 'no variant is expected to beat it'}"
        return keep_verdict(text, expected_to_beat=None)
    return {"keep_current": False, "variant_expected_to_beat_current": None, "best_variant": None,
            "text": f"Variant {chosen.get('variant')} was chosen (this decision predates the comparison with the "
                    "current deal's score)"}  # fmt: skip


__all__ = ["KEEP", "attention_concentration", "keep_verdict", "top_features", "verdict", "verdict_of_old_decision"]
