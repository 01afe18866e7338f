from __future__ import annotations

from flask import session
from flask_login import login_user, logout_user
from flask_smorest import Blueprint
from flask_wtf.csrf import generate_csrf

from app.api import API_PREFIX
from app.auth import Unauthorized, authenticate
from app.schemas.auth import LoginSchema, MeSchema
from app.schemas.common import ProblemSchema
from app.services import users

bp = Blueprint("auth", __name__, url_prefix=f"{API_PREFIX}/auth", description="Browser sign-in")


def _me(user: object) -> dict[str, object]:
    return {"user": user, "csrf_token": generate_csrf()}


@bp.post("/login")
@bp.arguments(LoginSchema)
@bp.response(200, MeSchema)
@bp.alt_response(401, schema=ProblemSchema)
def login(data: dict[str, str]) -> dict[str, object]:
    """Sign in with e-mail and password; sets the session cookie."""
    user = users.check_credentials(data["email"], data["password"])
    if user is None:
        raise Unauthorized("Invalid email or password")
    session.clear()  # new session id on sign-in (no fixation)
    login_user(user)
    return _me(user)


@bp.get("/me")
@bp.response(200, MeSchema)
@bp.alt_response(401, schema=ProblemSchema)
def me() -> dict[str, object]:
    """The signed-in user and the CSRF token for cookie-authenticated writes."""
    return _me(authenticate())


@bp.post("/logout")
@bp.response(204)
def logout() -> None:
    """Sign out (cookie sessions need the X-CSRFToken header)."""
    authenticate()
    logout_user()
    session.clear()
