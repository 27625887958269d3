"""The question: a spec file validated into a `GridSpec` (parse, overrides), what its trials run
(workloads: the built-in catalog or the user's command or function; target: placeholders and the
script hash; patterns: `metrics:`), and its expansion into `Trial`s."""
