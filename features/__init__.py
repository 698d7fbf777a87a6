"""coopscore: features."""
