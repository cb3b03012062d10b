"""Entropy models (rate estimates for training, probability tables for coding), the ANS coder, and the
latent codec that turns a scaled latent into streams and back (latent_codec.py)."""
