"""Online feature store: the latest member vectors, served by key (`base.OnlineStore`).

Backends live one per module (`sqlite.SqliteOnlineStore` is the embedded default); callers get the
configured one from `factory.online_store(settings)`.
"""
