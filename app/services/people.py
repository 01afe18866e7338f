"""Users as the rest of the product sees them: pickers (all roles), role changes (admins)."""

from __future__ import annotations

from sqlalchemy import select

from app.errors import Forbidden, Invalid, NotFound
from app.extensions import db
from app.models import Role, User
from app.services import audit


def list_users() -> list[User]:
    return list(db.session.execute(select(User).order_by(User.email)).scalars())


def update_user(user_id: int, data: dict[str, object], actor: User) -> User:
    """Change a user's role or active flag (admins only; audited as user.role_changed /
    user.updated). An admin cannot demote or deactivate themself (no lock-out)."""
    if actor.role != Role.ADMIN.value:
        raise Forbidden("only an admin can change users")
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    role = data.get("role")
    if role is not None and role not in {r.value for r in Role}:
        raise Invalid(f"role must be one of {', '.join(r.value for r in Role)}")
    if user.id == actor.id and (
        (role is not None and role != user.role) or data.get("active") is False
    ):
        raise Forbidden("you cannot change your own role or deactivate yourself")
    if role is not None and role != user.role:
        previous, user.role = user.role, str(role)
        audit.record(
            actor,
            "user.role_changed",
            "user",
            user.id,
            email=user.email,
            role=user.role,
            previous=previous,
            via="api",
        )
    active = data.get("active")
    if active is not None and active != user.active:
        user.active = bool(active)
        audit.record(actor, "user.updated", "user", user.id, email=user.email, active=user.active)
    db.session.commit()
    return user
