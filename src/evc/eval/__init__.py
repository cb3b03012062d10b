"""Evaluation: metrics, the eval runner, live baselines, BD-rate, plots, speed benchmarks and complexity
(parameters, MACs)."""
