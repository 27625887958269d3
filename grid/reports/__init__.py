"""What the results say: a table model (table), each sweep's report (build), rendered in a
terminal (terminal), as one HTML page (page) with plots, regressions against a baseline
(compare), and the end-of-run and `grid status` tables (summary)."""
