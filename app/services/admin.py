"""Admin work the API offers: creating users, and the effective settings without secrets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, Forbidden, Invalid
from app.extensions import db
from app.models import Role, User
from app.services import audit, users

PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 1024


def _field_problem(field: str, message: str) -> Invalid:
    # The shape flask-smorest uses for schema errors, so the UI shows it next to the field.
    return Invalid(message, errors={"json": {field: [message]}})


def check_password_policy(password: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise _field_problem(
            "password", f"the password must have at least {PASSWORD_MIN_LENGTH} characters"
        )
    if len(password) > PASSWORD_MAX_LENGTH:
        raise _field_problem(
            "password", f"the password must have at most {PASSWORD_MAX_LENGTH} characters"
        )
    if not password.strip():
        raise _field_problem("password", "the password cannot be only spaces")


def create_user(data: Mapping[str, Any], actor: User) -> User:
    """An admin creates a user with an initial password (audited as ``user.created``; the
    password is never recorded). 409 when the e-mail is taken."""
    if actor.role != Role.ADMIN.value:
        raise Forbidden("only an admin can create users")
    email = users.normalise_email(str(data["email"]))
    role = str(data["role"])
    if role not in {r.value for r in Role}:
        raise _field_problem("role", f"role must be one of {', '.join(r.value for r in Role)}")
    password = str(data["password"])
    check_password_policy(password)
    if users.find_user(email) is not None:
        raise Conflict(f"a user with the e-mail {email} exists")
    # Looked up through the module so the tests' cheaper hash applies here too.
    user = User(
        email=email,
        name=str(data.get("name") or "").strip(),
        role=role,
        password_hash=users.generate_password_hash(password),
    )
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError as exc:  # created by someone else since the lookup
        db.session.rollback()
        raise Conflict(f"a user with the e-mail {email} exists") from exc
    audit.record(actor, "user.created", "user", user.id, email=email, role=role, via="api")
    db.session.commit()
    return user


# -- settings ---------------------------------------------------------------------------


def _hostport(url: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return None
    if ":" in host:
        host = f"[{host}]"
    return parts.scheme, f"{host}:{port}" if port else host


def url_without_credentials(url: str | None) -> str | None:
    """scheme://host:port/path: no user, password, query string or fragment (any of them
    can carry a secret)."""
    if not url:
        return None
    found = _hostport(url)
    if found is None:
        return "(not a valid URL)"
    scheme, hostport = found
    return f"{scheme}://{hostport}{urlsplit(url).path}"


def url_host_only(url: str | None) -> str | None:
    """scheme://host:port: webhook paths often carry the token (Slack, Teams...)."""
    if not url:
        return None
    found = _hostport(url)
    if found is None:
        return "(not a valid URL)"
    scheme, hostport = found
    return f"{scheme}://{hostport}"


def _configured(value: Any) -> str | None:
    return "configured" if value else None


def _plain(value: Any) -> Any:
    return value


class _Setting(NamedTuple):
    config_key: str  # in app.config
    description: str
    show: Callable[[Any], Any] = _plain  # how the value may be shown
    env: str = ""  # the environment variable, when not named like the config key

    @property
    def secret(self) -> bool:
        return self.show is _configured


# An allowlist: a setting someone adds to app.config later stays hidden here until listed.
_SETTINGS: tuple[_Setting, ...] = (
    _Setting(
        "SQLALCHEMY_DATABASE_URI",
        "Database (without credentials)",
        url_without_credentials,
        "FLOWGATE_DATABASE_URL",
    ),
    _Setting(
        "FLOWGATE_REDIS_URL",
        "Redis for the run queue (without credentials)",
        url_without_credentials,
    ),
    _Setting("INSTANCE_PATH", "Instance folder", env="FLOWGATE_INSTANCE_PATH"),
    _Setting("FLOWGATE_PORT", "HTTP port"),
    _Setting("FLOWGATE_PUBLIC_URL", "Public address used in links", url_without_credentials),
    _Setting("FLOWGATE_DEMO", "Demo data seeded"),
    _Setting("FLOWGATE_EGRESS_ALLOW", "Private networks connectors may reach"),
    _Setting("FLOWGATE_FILE_ROOTS", "Folders file and SQLite connections may use"),
    _Setting("FLOWGATE_QUEUE_NAME", "Run queue name"),
    _Setting("FLOWGATE_MAX_BACKLOG", "Waiting runs per flow before intake answers 429"),
    _Setting("FLOWGATE_MAX_BODY_BYTES", "Largest intake body (bytes)"),
    _Setting("FLOWGATE_MAX_JSON_DEPTH", "Deepest intake JSON"),
    _Setting("FLOWGATE_RETENTION_DAYS", "Days run payloads are kept (0 = forever)"),
    _Setting("FLOWGATE_RUN_LEASE_SECONDS", "Run lease before a run is presumed dead"),
    _Setting("FLOWGATE_MAX_RUN_ATTEMPTS", "Attempts before a run is dead-lettered"),
    _Setting("FLOWGATE_REQUEUE_AFTER_SECONDS", "A queued run is re-enqueued after"),
    _Setting("FLOWGATE_SWEEP_INTERVAL_SECONDS", "Sweeper interval"),
    _Setting("FLOWGATE_POLL_LEASE_SECONDS", "Poll lease before another scheduler takes over"),
    _Setting("FLOWGATE_BREAKER_THRESHOLD", "Failures before a connection's circuit opens"),
    _Setting("FLOWGATE_BREAKER_COOLDOWN_SECONDS", "Open circuit cool-down"),
    _Setting("FLOWGATE_MAPPING_TIMEOUT_MS", "Time limit per mapping evaluation (ms)"),
    _Setting("FLOWGATE_MAPPING_MEMORY_MB", "Memory cap per mapping process (MB)"),
    _Setting("FLOWGATE_MAPPING_POOL_SIZE", "Mapping processes per worker"),
    _Setting("FLOWGATE_ALERT_INTERVAL_SECONDS", "Alert evaluation interval"),
    _Setting("FLOWGATE_SMTP_URL", "Mail server (host and port only)", url_host_only),
    _Setting("FLOWGATE_SMTP_FROM", "Sender of notification mail"),
    _Setting("FLOWGATE_NOTIFY_WEBHOOK_URL", "Governance webhook (host only)", url_host_only),
    _Setting("FLOWGATE_ALERT_WEBHOOK_URL", "Alert chat webhook (host only)", url_host_only),
    _Setting("SECRET_KEY", "Session signing key", _configured, "FLOWGATE_SECRET_KEY"),
    _Setting("FLOWGATE_SECRET_KEYS", "Keys that encrypt connection secrets", _configured),
    _Setting("FLOWGATE_METRICS_TOKEN", "Token Prometheus sends to /metrics", _configured),
)


def effective_settings(actor: User) -> list[dict[str, Any]]:
    """The settings the app runs with, for admins: never a secret, a password in a URL, a
    query string or a webhook path."""
    if actor.role != Role.ADMIN.value:
        raise Forbidden("only an admin can read the settings")
    config = current_app.config
    items = []
    for setting in _SETTINGS:
        if setting.config_key not in config:
            continue
        items.append(
            {
                "key": setting.env or setting.config_key,
                "value": setting.show(config.get(setting.config_key)),
                "secret": setting.secret,
                "description": setting.description,
            }
        )
    return items
