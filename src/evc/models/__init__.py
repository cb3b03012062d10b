"""Assembled codec models: the variable-rate EVC model, the scalable (RRL) model, their registry, weights
files with their metadata keys, and model cards."""
