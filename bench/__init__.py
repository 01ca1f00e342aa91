"""The hf-gateway benchmark (issue 7): `python -m bench --quick`. See bench/README.md."""
