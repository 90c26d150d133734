"""Request dependencies that decide who is calling and whether they may."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from image_tagger.auth.service import ROLES, find_token
from image_tagger.db import session_scope
from image_tagger.settings import get_settings

ROLE_HEADER = "X-User-Role"


@dataclass(frozen=True)
class Principal:
    role: str
    name: str


def _unauthorized(detail: str, *, scheme: str = "Bearer") -> HTTPException:
    """A 401 whose challenge names what would let the caller in: a bearer token,
    or in header mode the proxy's role header (a browser cannot supply that)."""
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": scheme},
    )


bearer_scheme = HTTPBearer(
    auto_error=False,
    description="Token mode (default): a token from `image-tagger token create`.",
)
role_header_scheme = APIKeyHeader(
    name=ROLE_HEADER,
    auto_error=False,
    description="Header mode (IMAGE_TAGGER_AUTH_MODE=header): set by your proxy.",
)


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    role_header: Annotated[str | None, Depends(role_header_scheme)],
) -> Principal:
    """The caller, from the bearer token (token mode) or the role header."""
    if get_settings().auth_mode == "header":
        if len(request.headers.getlist(ROLE_HEADER)) > 1:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                detail=f"more than one {ROLE_HEADER} header; the proxy must replace "
                "the client's header, not add to it",
            )
        role = (role_header or "").strip().lower()
        if not role:
            raise _unauthorized(
                f"missing {ROLE_HEADER} header; the proxy in front of the service "
                "must set it (auth mode is 'header')",
                scheme=ROLE_HEADER,
            )
        if role not in ROLES:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"unknown role {role!r}; roles are {', '.join(ROLES)}",
            )
        return Principal(role=role, name=f"header:{role}")

    if len(request.headers.getlist("Authorization")) > 1:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="more than one Authorization header; send exactly one",
        )
    token = credentials.credentials.strip() if credentials else ""
    if not token:
        raise _unauthorized(
            "missing bearer token; send 'Authorization: Bearer <token>' "
            "(create one with: image-tagger token create --role admin)"
        )
    with session_scope() as session:
        row = find_token(session, token)
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
