"""Leaderboard: benchmarks, submissions, every result with its protocol in DuckDB, the
multilingual ranking (headline: the Indo-European vs non-Indo-European gap) and the papers'
tables."""
