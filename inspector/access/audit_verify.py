"""Checking the audit trail: every entry's hash, every link, and the signed head anchor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from inspector.access.audit_anchor import AnchorForged, ChainHead, HeadAnchor, anchor_for
from inspector.storage.audit_chain import GENESIS, entry_hash
from inspector.storage.users_models import AuditRecord

__all__ = ["AuditVerification", "verify_audit"]

_TABLE = AuditRecord.__table__


@dataclass(frozen=True)
class AuditVerification:
    """The outcome of `verify_audit`: how many entries, and the first problem (None: intact)."""

    entries: int
    problem: str | None = None
    anchor: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None

    def __str__(self) -> str:
        return f"{self.entries} entries, chain intact" if self.ok else str(self.problem)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "problem": self.problem, "anchor": self.anchor}


def verify_audit(engine: Engine, anchor: HeadAnchor | None = None) -> AuditVerification:
    """Walk the trail in id order and compare its head with the anchor.

    Reports the first entry changed (its hash does not match its content, or the next
    entry does not link to it), removed (an entry links to one that is gone, or the head
    anchor knows newer entries) or inserted (no hash, links past entries, or newer than
    the anchor).
    """
    anchor = anchor if anchor is not None else anchor_for(engine)
    hashes: dict[int, str] = {}  # id -> hash, for the anchor check
    seen: dict[str, int] = {GENESIS: 0}  # hash -> id
    ids: list[int] = []
    prev_id, prev_hash = 0, GENESIS
    cols = [_TABLE.c[c] for c in ("id", "at", "user", "action", "target", "old", "new", "prev_hash", "hash")]
    with engine.connect() as conn:
        for r in conn.execute(select(*cols).order_by(_TABLE.c.id)):
            problem = _check_link(r, prev_id, prev_hash, seen, ids)
            if problem is not None:
                return AuditVerification(len(ids), problem, anchor.where)
            ids.append(r.id)
            hashes[r.id] = r.hash
            seen[r.hash] = r.id
            prev_id, prev_hash = r.id, r.hash
    head = ChainHead(len(ids), prev_id, prev_hash)
    return AuditVerification(len(ids), _check_anchor(head, anchor, hashes, ids), anchor.where)


def _check_link(r: Any, prev_id: int, prev_hash: str, seen: dict[str, int], ids: list[int]) -> str | None:
    if not r.hash:
        return f"audit entry {r.id} inserted (it has no hash)"
    if entry_hash(r.id, r.at, r.user, r.action, r.target, r.old, r.new, r.prev_hash or "") != r.hash:
        return f"audit entry {r.id} changed (hash mismatch)"
    if r.prev_hash == prev_hash:
        return None
    if r.prev_hash in seen:  # it links to an older entry: the ones after that were slipped in
        older = seen[r.prev_hash]
        first = next(i for i in ids if i > older)
        return f"audit entry {first} inserted (entry {r.id} links to entry {older})"
    if prev_id == 0 or r.id != prev_id + 1:
        after = f"after {prev_id}" if prev_id else f"before {r.id}"
        return f"entries {after} removed (entry {r.id} links to a missing entry)"
    return f"audit entry {prev_id} changed (entry {r.id} does not link to it)"


def _check_anchor(head: ChainHead, anchor: HeadAnchor, hashes: dict[int, str], ids: list[int]) -> str | None:
    try:
        stored = anchor.read()
    except AnchorForged as exc:
        return f"{exc} (edited, or made by another station)"
    if stored is None:
        if head.count == 0:
            return None
        return f"no head anchor at {anchor.where}: cannot tell whether the newest entries were removed"
    if stored.accepts(head):
        return None
    a = stored.head
    says = f"head anchor says {a.count} entries, the last {a.last_id}"
    if hashes.get(a.last_id) == a.last_hash:
        later = [i for i in ids if i > a.last_id]
        if later:
            return f"audit entry {later[0]} inserted after the head anchor ({says})"
        return f"audit chain has {head.count} entries up to entry {head.last_id} ({says})"
    if head.last_id < a.last_id:
        return f"entries after {head.last_id} removed ({says})"
    if a.last_id in hashes:
        return f"audit entry {a.last_id} changed (it does not match the head anchor)"
    return f"audit chain rewritten (entry {a.last_id} of the head anchor is missing; {says})"
