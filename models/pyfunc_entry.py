"""MLflow models-from-code entry point for the credit model (logged as a file, never pickled).

MLflow executes this file when the model is loaded through `mlflow.pyfunc.load_model`; it builds the
`CreditModel` from the logged text/JSON artifacts after checking their SHA-256 against the values in
the model config. coopscore's own loader (`models.registry.load_model`) does not go through pyfunc:
it verifies the registry's checksum tags and builds the `CreditModel` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.models
from mlflow.pyfunc.model import PythonModel, PythonModelContext


class CreditModelPyfunc(PythonModel):  # type: ignore[misc]
    """pyfunc adapter: a DataFrame of feature rows in, PD / score / grade / decision out."""

    # The signature is logged explicitly; MLflow need not (and cannot) derive one from the hints.
    _skip_type_hint_validation = True

    def load_context(self, context: PythonModelContext) -> None:
        """Verify the artifacts' SHA-256 and build the model from them."""
        from models.artifacts import verify_checksums
        from models.credit_model import CreditModel

        files = {Path(p).name: Path(p) for p in context.artifacts.values()}
        config = context.model_config or {}
        verify_checksums(files, config.get("artifact_sha256", {}))
        directory = next(iter(files.values())).parent
        self.model = CreditModel.load(directory)

    # `model_input` is deliberately unannotated: MLflow would try to derive a schema from the hint.
    def predict(  # type: ignore[no-untyped-def]
        self, context: PythonModelContext, model_input, params: dict[str, Any] | None = None
    ) -> Any:
        """Score every row of `model_input` (a DataFrame with the model's feature columns)."""
        import pandas as pd

        frame = pd.DataFrame(model_input)
        pds = self.model.predict_pd(frame)
        scores = self.model.scale.score_from_pd(pds)
        decisions = self.model.decisions(frame, pds)
        return pd.DataFrame(
            {
                "pd": pds,
                "score": scores,
                "grade": self.model.scale.grades_of(scores),
                "decision": [d.outcome for d in decisions],
            }
        )


mlflow.models.set_model(CreditModelPyfunc())
