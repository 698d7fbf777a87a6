"""coopscore: coopscore."""
