"""coopscore: models — the credit model as one object, and its pickle-free registry I/O.

- `models.credit_model.CreditModel`: booster + Platt calibration + score scale + feature spec +
  decision policy; `predict_pd`, `score`, `explain(top_k=4)`, `decide`, `assess`.
- `models.registry.load_model(alias_or_version, tracking_uri)`: a registered version, verified.
- `models.spec`, `models.scale`, `models.calibration`, `models.policy`, `models.reasons`: its parts.
- `models.mlflow_io` and `models.shap_check`: the only modules that touch MLflow and SHAP.
"""
