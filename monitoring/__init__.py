"""coopscore: monitoring."""
