"""Training: the X-MIC adapter and its baselines on cached features (model, data, loop, inference)."""
