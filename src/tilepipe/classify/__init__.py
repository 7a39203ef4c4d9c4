"""Crop classification of fields from embeddings with CatBoost, and its quality checks."""
