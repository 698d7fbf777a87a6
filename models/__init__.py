"""coopscore: models."""
