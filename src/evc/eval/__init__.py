"""Evaluation tools: complexity counting (parameters, MACs)."""
