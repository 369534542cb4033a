"""The base every layer stands on: keypoint names and flips, errors, atomic writes, configs, metrics."""
