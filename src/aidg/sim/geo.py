"""Cities, merchant locations and local competition."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from aidg.sim.catalog import REAL_CITIES, SYLLABLES_A, SYLLABLES_B

KM_PER_DEG = 111.0
COMPETITION_RADIUS_KM = 3.0


def make_cities(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """``n`` cities: the 20 real ones first, then generated towns across the same area."""
    rows = list(REAL_CITIES[: min(n, len(REAL_CITIES))])
    used = {r[0] for r in rows}
    while len(rows) < n:
        name = rng.choice(SYLLABLES_A) + rng.choice(SYLLABLES_B)
        if name in used:
            name = f"{name} {len(rows)}"
        used.add(name)
        size = int(np.clip(rng.lognormal(np.log(60_000), 1.0), 5_000, 2_000_000))
        rows.append((name, float(rng.uniform(26, 48)), float(rng.uniform(-122, -71)), size))
    pop = np.array([r[3] for r in rows], dtype=float)
    demand = np.exp(rng.normal(0, 0.25, len(rows))) * (pop / np.median(pop)) ** 0.1
    return pd.DataFrame(
        {
            "city_id": [f"city-{i:04d}" for i in range(len(rows))],
            "name": [r[0] for r in rows],
            "lat": [round(r[1], 4) for r in rows],
            "lon": [round(r[2], 4) for r in rows],
            "population": pop.astype(np.int64),
            "demand_index": np.round(demand / demand.mean(), 4),
        }
    )


def place_merchants(
    rng: np.random.Generator, cities: pd.DataFrame, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """City index, lat and lon of ``n`` merchants; bigger cities get more merchants."""
    w = cities["population"].to_numpy(float) ** 0.7
    city = rng.choice(len(cities), size=n, p=w / w.sum())
    spread = 0.02 + 0.02 * (cities["population"].to_numpy(float)[city] / 1e6) ** 0.5  # degrees
    lat = cities["lat"].to_numpy()[city] + rng.normal(0, 1, n) * spread
    lon = cities["lon"].to_numpy()[city] + rng.normal(0, 1, n) * spread
    return city, np.round(lat, 5), np.round(lon, 5)


def competition_counts(
    lat: np.ndarray, lon: np.ndarray, category: np.ndarray, query_category: np.ndarray, n_categories: int
) -> np.ndarray:
    """Merchants of ``query_category`` within 3 km of each merchant (itself excluded)."""
    xy = np.column_stack([lat * KM_PER_DEG, lon * KM_PER_DEG * np.cos(np.radians(lat))])
    out = np.zeros(len(lat))
    for c in range(n_categories):
        members = np.flatnonzero(category == c)
        askers = np.flatnonzero(query_category == c)
        if len(members) == 0 or len(askers) == 0:
            continue
        tree = cKDTree(xy[members])
        counts = tree.query_ball_point(xy[askers], r=COMPETITION_RADIUS_KM, return_length=True)
        out[askers] = counts - (category[askers] == c)  # do not count oneself
    return out
