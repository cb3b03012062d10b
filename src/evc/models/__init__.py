"""Assembled codec models: the variable-rate EVC model, the scalable (RRL) model, and their registry."""
