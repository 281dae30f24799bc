"""The fault tests' fixtures, defined in fault_runs.py beside their helpers."""

from fault_runs import clips, codes_dir, feature_extractor, finished, full_run, small_disk  # noqa: F401
