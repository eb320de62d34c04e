"""Cities and their hidden regions, merchant locations (multi-location businesses too), local competition."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from aidg.sim.catalog import REAL_CITIES, REAL_CITY_REGIONS, SYLLABLES_A, SYLLABLES_B

KM_PER_DEG = 111.0
COMPETITION_RADIUS_KM = 3.0
MULTI_LOCATION_SHARE = 0.15  # merchants with 1–2 locations beyond their primary city
SECOND_EXTRA_SHARE = 0.5  # of those, the share with two extra locations
SAME_REGION_SHARE = 0.85  # an extra location is in the same region, near the primary city; otherwise anywhere
LOCAL_SCALE_KM = 300.0  # a same-region city d km away is drawn with weight exp(−d / 300 km)
EARTH_RADIUS_KM = 6371.0


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


def region_of(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The US census region (West, South, Midwest, Northeast) of a point, by latitude/longitude bands.

    West: lon < −102 (the Mountain and Pacific states); Northeast: lon > −80.5 and lat ≥ 39.7
    (east of Ohio, north of the Mason–Dixon line); South: lat < 37, or lon > −84 and lat < 39.7;
    Midwest: the rest. The bands give the 20 real cities their true census region.

    >>> region_of(np.array([41.88, 29.76, 33.45, 39.95]), np.array([-87.63, -95.37, -112.07, -75.17])).tolist()
    ['Midwest', 'South', 'West', 'Northeast']
    """
    lat, lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
    south = (lat < 37) | ((lon > -84) & (lat < 39.7))
    region = np.where(
        lon < -102, "West", np.where((lon > -80.5) & (lat >= 39.7), "Northeast", np.where(south, "South", "Midwest"))
    )
    return region.astype(object)


def city_regions(cities: pd.DataFrame) -> pd.DataFrame:
    """Hidden truth: the region of every city (census region of a real city, lat/lon bands for a town)."""
    bands = region_of(cities["lat"].to_numpy(float), cities["lon"].to_numpy(float))
    known = cities["name"].map(REAL_CITY_REGIONS).to_numpy(dtype=object)
    region = np.where(pd.isna(known), bands, known)
    return pd.DataFrame({"city_id": cities["city_id"].to_numpy(dtype=object), "region": region.astype(object)})


def _unit_xyz(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def extra_locations(
    rng: np.random.Generator, cities: pd.DataFrame, region: np.ndarray, city: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Merchant and city index of each extra location of the multi-location merchants.

    About 15 % of merchants have 1 (half of them 2) locations beyond their primary
    city ``city``, always in other cities. Each is drawn with probability 0.85 among
    the other cities of the primary city's region, the nearer the likelier (weight
    exp(−distance / 300 km)); otherwise, or where the region has no city left,
    uniformly among all other cities.
    """
    n, nc = len(city), len(cities)
    empty = np.zeros(0, dtype=np.int64)
    multi = rng.random(n) < MULTI_LOCATION_SHARE
    n_extra = np.where(multi, 1 + (rng.random(n) < SECOND_EXTRA_SHARE), 0)
    u_local, u_pick = rng.random((n, 2)), rng.random((n, 2))
    if nc < 2:
        return empty, empty
    xyz = _unit_xyz(cities["lat"].to_numpy(float), cities["lon"].to_numpy(float))
    members = {r: np.flatnonzero(region == r) for r in np.unique(region)}
    pull: dict[object, np.ndarray] = {}  # region -> (members × members) pull of each city on the others
    for r, mem in members.items():
        km = EARTH_RADIUS_KM * np.arccos(np.clip(xyz[mem] @ xyz[mem].T, -1.0, 1.0))
        pull[r] = np.exp(-km / LOCAL_SCALE_KM) * (1 - np.eye(len(mem)))
    pos = np.zeros(nc, dtype=np.int64)  # a city's row in its region's pull matrix
    for mem in members.values():
        pos[mem] = np.arange(len(mem))
    out_m: list[int] = []
    out_c: list[int] = []
    for i in np.flatnonzero(n_extra):
        home = int(city[i])
        same = members[region[home]]
        near = pull[region[home]][pos[home]].copy()
        anywhere = np.ones(nc)
        anywhere[home] = 0.0
        for j in range(int(n_extra[i])):
            if u_local[i, j] < SAME_REGION_SHARE and near.sum() > 0:
                c = int(same[_draw(near, u_pick[i, j])])
            elif anywhere.sum() > 0:
                c = _draw(anywhere, u_pick[i, j])
            else:
                break
            if region[c] == region[home]:
                near[pos[c]] = 0.0
            anywhere[c] = 0.0
            out_m.append(int(i))
            out_c.append(c)
    return np.array(out_m, dtype=np.int64), np.array(out_c, dtype=np.int64)


def _draw(weights: np.ndarray, u: float) -> int:
    """The index that uniform ``u`` in [0, 1) picks with probabilities proportional to ``weights``."""
    cum = np.cumsum(weights)
    return min(int(np.searchsorted(cum, u * cum[-1], side="right")), len(weights) - 1)
