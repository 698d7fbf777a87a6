"""coopscore: training."""
