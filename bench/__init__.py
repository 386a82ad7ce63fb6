"""plait's benchmarks: `python -m bench --help`."""
