"""Entropy models (rate estimates for training, probability tables for coding) and the ANS coder."""
