"""Feature declarations, one module per reason group; `features.catalog.registry` orders them."""
