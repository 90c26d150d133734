"""Creating and checking API tokens. Only a SHA-256 of each token is stored."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from image_tagger.auth.models import ApiToken
from image_tagger.db import utcnow

ROLES = ("admin", "tagger")
TOKEN_PREFIX = "itk_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, *, role: str, name: str) -> str:
    """Store a new token for ``role`` and return it; it cannot be shown again."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")

    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, role=role, token_hash=hash_token(token)))
    session.flush()
    return token


def find_token(session: Session, token: str) -> ApiToken | None:
    """The live token row matching ``token``, or None."""
    row = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_token(token))
    )
    if row is None or row.revoked_at is not None:
        return None
    return row


def has_admin_token(session: Session) -> bool:
    query = select(ApiToken.id).where(
        ApiToken.role == "admin", ApiToken.revoked_at.is_(None)
    )
    return session.scalar(query.limit(1)) is not None


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, token_id: int) -> bool:
    """Revoke the token with ``token_id``; False if there is no live one."""
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.flush()
    return True
