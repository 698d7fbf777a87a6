"""coopscore: serving."""
