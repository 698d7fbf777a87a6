"""GET /v1/members/{member_id}/features: the online vector a score would use."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from serving.deps import ReadKey, StateDep
from serving.schemas import ERROR_RESPONSES, MemberFeaturesResponse
from serving.scoring import json_safe

router = APIRouter(responses=ERROR_RESPONSES, prefix="/v1/members", tags=["members"])


@router.get("/{member_id}/features", response_model=MemberFeaturesResponse)
def member_features(
    member_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")],
    state: StateDep,
    _key: ReadKey,
) -> MemberFeaturesResponse:
    """The member's features as of the last materialization (never any protected attribute)."""
    [vector] = state.online_store.online_read([member_id])
    if vector is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"member {member_id!r} has no feature vector")
    return MemberFeaturesResponse(
        member_id=member_id,
        as_of=vector.as_of,
        feature_set_version=vector.feature_set_version,
        features=json_safe(vector.features),
    )
