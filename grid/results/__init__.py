"""The results dataset: one schema (schema), rows (rows), atomic per-attempt files and reading
(store, s3, dedupe), compaction, SQL queries, and the check that every node can write it."""
