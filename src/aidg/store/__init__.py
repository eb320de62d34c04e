"""Storage: the offline store (Parquet + DuckDB), data validation, the online store and embedding cache, and the
decision log (each online backend behind a small interface, with an in-process default and a real server)."""

from aidg.store.arrays import pack_arrays, unpack_arrays
from aidg.store.cache import CacheStats, EmbeddingCache
from aidg.store.offline import OfflineStore
from aidg.store.online import CacheBackend, OnlineStore
from aidg.store.online_memory import MemoryCacheBackend, MemoryOnlineStore
from aidg.store.schema import ColumnSpec, column_specs, schema_markdown
from aidg.store.validate import check_references, check_table, validate_tables

__all__ = [
    "CacheBackend",
    "CacheStats",
    "ColumnSpec",
    "EmbeddingCache",
    "MemoryCacheBackend",
    "MemoryOnlineStore",
    "OfflineStore",
    "OnlineStore",
    "check_references",
    "check_table",
    "column_specs",
    "pack_arrays",
    "schema_markdown",
    "unpack_arrays",
    "validate_tables",
]
