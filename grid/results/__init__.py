"""The results dataset: one schema (schema), rows (rows), atomic per-attempt files and reading
(store, layout, dedupe) over a storage backend (backend: local, S3, any pyarrow.fs), compaction,
SQL queries, and the check that every node can write it."""
