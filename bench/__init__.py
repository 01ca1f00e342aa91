"""The hf-gateway benchmark and its performance targets: `python -m bench --quick`. See bench/README.md."""
