"""Fovea: a self-hosted AI Studio for vision-language models."""

__version__ = "0.1.0"
