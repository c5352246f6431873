"""Benchmarks, run from the repository's root as modules: `python -m bench.rush`, `python -m bench.ws_fanout`,
`python -m bench.logins`, `python -m bench.buy_path` (results in bench/results/, summary in BENCHMARKS.md)."""
