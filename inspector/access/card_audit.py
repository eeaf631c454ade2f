"""The audit row a station writes when its model's card changed since the last run."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from inspector.access.audit import AuditLog
from inspector.storage.users_models import AuditRecord

log = logging.getLogger(__name__)


def audit_card_change(engine: Engine, card: Any) -> None:
    """Record in the audit trail when this model's card differs from the one the station last used.

    The first start with a model, and every start after its card changed (a new threshold,
    new metrics, a new file), appends a ``model_card_changed`` row (user ``station``) with the
    old and new card digests and thresholds.

    Args:
        engine: The station's database.
        card: The model's card (`inspector.pipeline.model_repo.ModelCard`): ``name``, ``audit_text``.
    """
    with Session(engine) as s:
        last = s.scalar(
            select(AuditRecord.new)
            .where(AuditRecord.action == "model_card_changed", AuditRecord.target == card.name)
            .order_by(AuditRecord.id.desc())
            .limit(1)
        )
    new = card.audit_text
    if last == new:
        return
    AuditLog(engine).record("station", "model_card_changed", card.name, last, new)
    if last is not None:
        log.warning("model %s: its card changed since the last run (%s -> %s)", card.name, last, new)
