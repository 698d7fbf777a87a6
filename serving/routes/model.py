"""GET /v1/model: the champion in service, its metrics and model card."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from serving.deps import ModelDep, require_scope
from serving.schemas import ERROR_RESPONSES, ModelResponse

router = APIRouter(
    responses=ERROR_RESPONSES,
    prefix="/v1/model",
    tags=["model"],
    dependencies=[Depends(require_scope("read"))],
)


@router.get("", response_model=ModelResponse)
def get_model(served: ModelDep) -> ModelResponse:
    """Name, version, metadata (metrics, feature-set version), the markdown model card (from the
    verified bytes) and whether the model's signature was verified."""
    return ModelResponse(
        model_name=served.scorer.name,
        model_version=served.scorer.version,
        loaded_at=served.loaded_at,
        metadata=served.scorer.metadata,
        model_card=served.scorer.model_card,
        signed=served.signed,
        signature_key_id=getattr(served.scorer, "signature_key_id", None),
        signing_note=served.signing_note,
        model_digest=served.model_digest,
    )
