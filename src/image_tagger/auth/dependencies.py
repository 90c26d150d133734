"""Request dependencies that decide who is calling and whether they may."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from image_tagger.auth.service import ROLES, find_token
from image_tagger.db import session_scope
from image_tagger.settings import get_settings

ROLE_HEADER = "X-User-Role"


@dataclass(frozen=True)
class Principal:
    role: str
    name: str


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


def current_principal(request: Request) -> Principal:
    """The caller, from the bearer token (token mode) or the role header."""
    if get_settings().auth_mode == "header":
        role = request.headers.get(ROLE_HEADER, "").strip().lower()
        if not role:
            raise _unauthorized(
                f"missing {ROLE_HEADER} header; the proxy in front of the service "
                "must set it (auth mode is 'header')"
            )
        if role not in ROLES:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail=f"unknown role {role!r}"
            )
        return Principal(role=role, name=f"header:{role}")

    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized(
            "missing bearer token; send 'Authorization: Bearer <token>' "
            "(create one with: image-tagger token create --role admin)"
        )
    with session_scope() as session:
        row = find_token(session, token.strip())
        if row is None:
            raise _unauthorized(
                "invalid or revoked token; create a new one with: "
                "image-tagger token create --role admin"
            )
        return Principal(role=row.role, name=row.name)


def require_admin(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    if principal.role != "admin":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"this needs the admin role; your role is {principal.role!r}",
        )
    return principal


AdminPrincipal = Annotated[Principal, Depends(require_admin)]
