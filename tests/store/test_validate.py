from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from aidg.errors import DataValidationError, MissingTableError
from aidg.sim import World
from aidg.sim.storage import load_world
from aidg.store import OfflineStore, check_table, validate_tables


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_a_simulated_folder_loads_clean(small_world_dir: Path) -> None:
    tables, problems = OfflineStore(small_world_dir).load()
    assert problems == [] and len(tables["deals"]) > 30_000


def test_out_of_range_value_is_named_by_table_row_and_column(small_world_dir: Path, tmp_path: Path) -> None:
    d = _copy(small_world_dir, tmp_path / "w")
    deals = pd.read_parquet(d / "deals.parquet")
    deals.loc[17, "discount_pct"] = 1.7
    deals.to_parquet(d / "deals.parquet")
    with pytest.raises(DataValidationError) as exc:
        OfflineStore(d).load()
    [p] = exc.value.problems
    assert (p.table, p.row, p.column, p.value) == ("deals", 17, "discount_pct", 1.7)
    assert "table 'deals', row 17, column 'discount_pct'" in str(exc.value)


def test_missing_id_and_unknown_category_are_reported(small_world: World) -> None:
    tables = {k: v.copy() for k, v in small_world.tables.items()}
    tables["merchants"].loc[3, "merchant_id"] = None
    tables["deals"].loc[5, "category_id"] = "pottery"
    _, problems = validate_tables(tables)
    msgs = {(p.table, p.row, p.column): p.message for p in problems}
    assert msgs[("merchants", 3, "merchant_id")] == "must not be empty"
    assert msgs[("deals", 5, "category_id")] == "unknown category (not in categories)"


def test_drop_mode_keeps_going_and_removes_orphans(small_world: World) -> None:
    tables = {k: v.copy() for k, v in small_world.tables.items()}
    victim = tables["deals"].deal_id[10]
    tables["deals"].loc[10, "price"] = -5
    out, problems = validate_tables(tables, on_error="drop")
    assert len(out["deals"]) == len(tables["deals"]) - 1
    assert victim not in set(out["overrides"].deal_id.dropna())
    assert victim not in set(out["feedback_notes"].deal_id.dropna())
    assert any(p.column == "price" and p.row == 10 for p in problems)
    _, again = validate_tables(out)
    assert again == []


def test_type_errors_duplicates_and_missing_columns() -> None:
    cities = pd.DataFrame(
        {
            "city_id": ["a", "a"],
            "name": ["A", "B"],
            "lat": ["north", 1.0],
            "lon": [0.0, 0.0],
            "population": [10, 2.5],
            "demand_index": [1.0, 1.0],
        }
    )
    _, problems = check_table("cities", cities)
    text = [str(p) for p in problems]
    assert any("column 'lat'" in t and "not a valid float" in t for t in text)
    assert any("column 'population'" in t and "whole number" in t for t in text)
    assert any("duplicate key" in t for t in text)
    _, problems = check_table("cities", cities.drop(columns=["name"]))
    assert [str(p) for p in problems] == ["table 'cities', column 'name': required column is missing"]


def test_csv_folder_in_the_same_schema_loads_the_same_way(small_world: World, tmp_path: Path) -> None:
    for name in ("cities", "categories", "merchants", "reps"):
        small_world.tables[name].to_csv(tmp_path / f"{name}.csv", index=False)
    tables, problems = OfflineStore(tmp_path).load()
    assert problems == []
    pd.testing.assert_series_equal(tables["merchants"].baseline_gp30, small_world.tables["merchants"].baseline_gp30)
    assert tables["merchants"].created_at.dtype.kind == "M"
    assert OfflineStore(tmp_path).query("SELECT count(*) AS n FROM merchants").n[0] == 2000


def test_missing_tables_and_folders_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(MissingTableError, match="does not exist"):
        OfflineStore(tmp_path / "nope").load()
    with pytest.raises(MissingTableError, match=r"deals"):
        OfflineStore(tmp_path).load(required=("deals",))
    with pytest.raises(MissingTableError, match="no simulator truth"):
        load_world(tmp_path)


def test_world_round_trips_through_the_store(small_world: World, small_world_dir: Path) -> None:
    w = load_world(small_world_dir)
    assert w.meta["seed"] == 31 and w.as_of == small_world.as_of
    pd.testing.assert_frame_equal(w.truth["merchants"], small_world.truth["merchants"])
    assert len(w.tables["deals"]) == len(small_world.tables["deals"])
    q = OfflineStore(small_world_dir).query(
        "SELECT m.category_id, avg(d.discount_pct) AS d FROM deals d JOIN merchants m USING (merchant_id) "
        "GROUP BY 1 ORDER BY 1"
    )
    assert len(q) >= 15
