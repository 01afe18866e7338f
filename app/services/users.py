from __future__ import annotations

from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from app.errors import Conflict, Invalid
from app.extensions import db
from app.models import Role, User
from app.services import audit

# Compared against when the email is unknown, so a miss costs the same time as a hit.
_DUMMY_HASH = generate_password_hash("flowgate-timing-guard")


def normalise_email(email: str) -> str:
    return email.strip().lower()


PASSWORD_MIN_LENGTH = 12


def create_user(email: str, role: str, password: str, name: str = "") -> User:
    email = normalise_email(email)
    if role not in {r.value for r in Role}:
        raise Invalid(f"role must be one of {', '.join(r.value for r in Role)}")
    if len(password) < PASSWORD_MIN_LENGTH:  # the CLI and the demo seed as the admin API
        raise Invalid(f"password must have at least {PASSWORD_MIN_LENGTH} characters")
    if "@" not in email:
        raise Invalid("email must be an e-mail address")
    if find_user(email) is not None:
        raise Conflict(f"a user with email {email} exists")
    user = User(email=email, role=role, name=name, password_hash=generate_password_hash(password))
    db.session.add(user)
    db.session.flush()
    audit.record(None, "user.created", "user", user.id, email=email, role=role)
    db.session.commit()
    return user


def find_user(email: str) -> User | None:
    return db.session.execute(
        select(User).where(func.lower(User.email) == normalise_email(email))
    ).scalar_one_or_none()


def check_credentials(email: str, password: str) -> User | None:
    user = find_user(email)
    if user is None or not user.active:
        check_password_hash(_DUMMY_HASH, password)
        audit.record(None, "user.login_failed", "user", None, email=normalise_email(email))
        db.session.commit()
        return None
    if not check_password_hash(user.password_hash, password):
        audit.record(None, "user.login_failed", "user", user.id, email=user.email)
        db.session.commit()
        return None
    return user
