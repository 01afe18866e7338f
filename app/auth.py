"""Who is calling: a Bearer API token, or the browser's session cookie (with CSRF).

API tokens are random, shown once, and stored as SHA-256 hashes. Cookie-authenticated writes
must carry the CSRF token (header ``X-CSRFToken``); token-authenticated calls need none,
because a browser never attaches an Authorization header on its own.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from app.errors import Forbidden, ServiceError
from app.extensions import csrf, db, login_manager
from app.models import ApiToken, User
from app.models._types import utcnow

TOKEN_PREFIX = "fgt_"
F = TypeVar("F", bound=Callable[..., Any])


class Unauthorized(ServiceError):
    status, title = 401, "Unauthorized"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(user: User, name: str = "cli") -> str:
    """Create a token for ``user``; the clear token is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user=user, token_hash=hash_token(token), name=name))
    db.session.commit()
    return token


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    user = db.session.get(User, int(user_id))
    return user if user is not None and user.active else None


def _user_from_bearer(header: str) -> User:
    token = header[len("Bearer ") :].strip()
    row = db.session.execute(
        db.select(ApiToken).where(ApiToken.token_hash == hash_token(token))
    ).scalar_one_or_none()
    if row is None or not row.user.active:
        raise Unauthorized("invalid or revoked API token")
    now = utcnow()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        # Its own short transaction, at most once a minute: a read must not hold a write.
        row.last_used_at = now
        db.session.commit()
    return row.user


def authenticate() -> User:
    """Resolve the caller for an /api/v1 request (call from a before_request hook)."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        user = _user_from_bearer(header)
    elif current_user.is_authenticated:
        user = current_user._get_current_object()
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            try:
                csrf.protect()
            except CSRFError as exc:
                raise Forbidden(f"CSRF check failed: {exc.description}") from exc
    else:
        raise Unauthorized("sign in, or send 'Authorization: Bearer <token>'")
    g.user = user
    return user


def current_actor() -> User:
    user = g.get("user")
    if user is None:
        raise Unauthorized("not signed in")
    return user


def require_role(*roles: str) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_actor().role not in roles:
                raise Forbidden(f"this needs the role {' or '.join(roles)}")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
