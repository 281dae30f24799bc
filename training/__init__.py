"""What `run_mlm.py` and `run_classification.py` share: arguments, loading, code datasets, collators, labels, the FT2
trainer, sampling, metrics, and the demo data with its tiny codec."""
