"""Storage: the offline store (Parquet + DuckDB) and data validation."""

from aidg.store.offline import OfflineStore, load_world, save_world
from aidg.store.schema import ColumnSpec, column_specs, schema_markdown
from aidg.store.validate import check_references, check_table, validate_tables

__all__ = [
    "ColumnSpec",
    "OfflineStore",
    "check_references",
    "check_table",
    "column_specs",
    "load_world",
    "save_world",
    "schema_markdown",
    "validate_tables",
]
