"""Shared pieces for HTTP-based connectors: outcome classification and response excerpts.

The engine's retry decision rests on these rules (reliability.md, tests 9-12): 408, 409, 425,
429 and 5xx are worth retrying, 3xx and the other 4xx are not, and a transport failure is
retried because the same idempotency key makes the repeat harmless.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
import urllib3

from connectors.base import ConnectorError, RetryableConnectorError
from connectors.deadline import WATCHDOG

EXCERPT_CHARS = 2_000
# Read a little more than the excerpt so a secret straddling the cut is still masked whole,
# and never hold an unbounded response body in memory.
_READ_LIMIT_BYTES = 64 * 1024
# 409: a concurrent request on the same idempotency key is still in flight at the destination
# (IETF idempotency-key draft; Stripe): ask again later, it is not a verdict on the message.
_RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_DIGITS = re.compile(r"[0-9]+")

Redact = Callable[[str], str]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if _DIGITS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; the parser leaves "-0000" naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def read_excerpt(response: requests.Response, redact: Redact) -> str:
    """The first ``EXCERPT_CHARS`` characters of the body, secrets masked.

    A body that breaks off mid-read yields what arrived: the status already tells the story.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=8192):
            chunks.append(chunk)
            size += len(chunk)
            if size >= _READ_LIMIT_BYTES:
                break
    except (requests.RequestException, OSError):
        pass
    text = b"".join(chunks)[:_READ_LIMIT_BYTES].decode(response.encoding or "utf-8", "replace")
    return redact(text)[:EXCERPT_CHARS]


def read_raw_excerpt(response: urllib3.BaseHTTPResponse, redact: Redact) -> tuple[str, bool]:
    """``read_excerpt`` for a urllib3 response (decoded like requests, same charset rule);
    also whether the body was read to its end (the connection can then be reused)."""
    chunks: list[bytes] = []
    size = 0
    complete = False
    try:
        for chunk in response.stream(8192, decode_content=True):
            chunks.append(chunk)
            size += len(chunk)
            if size >= _READ_LIMIT_BYTES:
                break
        else:
            complete = True
    except (urllib3.exceptions.HTTPError, OSError):
        pass
    encoding = requests.utils.get_encoding_from_headers(response.headers) or "utf-8"
    try:
        text = b"".join(chunks)[:_READ_LIMIT_BYTES].decode(encoding, "replace")
    except LookupError:  # an unknown charset: requests falls back the same way
        text = b"".join(chunks)[:_READ_LIMIT_BYTES].decode("utf-8", "replace")
    return redact(text)[:EXCERPT_CHARS], complete


def as_requests_error(exc: Exception) -> requests.RequestException:
    """The exception requests' HTTPAdapter raises for this urllib3 failure (urllib3 called
    with ``retries=False`` raises the failure itself), so ``transport_error`` classifies a
    direct urllib3 call exactly like one through requests."""
    errors = urllib3.exceptions
    if isinstance(exc, errors.ConnectTimeoutError) and not isinstance(
        exc, errors.NewConnectionError
    ):
        return requests.ConnectTimeout(exc)
    if isinstance(exc, errors.ReadTimeoutError):
        return requests.ReadTimeout(exc)
    if isinstance(exc, errors.SSLError):
        return requests.exceptions.SSLError(exc)
    if isinstance(exc, (errors.ProtocolError, errors.NewConnectionError, OSError)):
        return requests.ConnectionError(exc)
    if isinstance(exc, (errors.ClosedPoolError, errors.MaxRetryError)):
        return requests.ConnectionError(exc)
    return requests.RequestException(exc)


def error_for_status(
    status: int, headers: Mapping[str, str], excerpt: str, redact: Redact
) -> ConnectorError | None:
    """The error a destination's answer means, or None for a 2xx."""
    if 200 <= status < 300:
        return None
    if status in _RETRYABLE_STATUSES or 500 <= status < 600:
        retry_after = None
        if status in _RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(headers.get("Retry-After"))
        return RetryableConnectorError(
            f"destination answered HTTP {status}; the delivery can be retried",
            status_code=status,
            response_excerpt=excerpt,
            retry_after_seconds=retry_after,
        )
    if 300 <= status < 400:
        location = redact(headers.get("Location", "") or "(no Location header)")
        return ConnectorError(
            f"destination answered HTTP {status} redirecting to {location}; redirects are not "
            "followed, so point the connection at the final URL",
            status_code=status,
            response_excerpt=excerpt,
        )
    return ConnectorError(
        f"destination rejected the message with HTTP {status}",
        status_code=status,
        response_excerpt=excerpt,
    )


# What a well-behaved peer can use: a connect and a wait for the answer, each up to the
# connection's timeout, plus this much to transfer the answer (we read a bounded part).
DEADLINE_GRACE_SECONDS = 2.0


def attempt_deadline(timeout: float) -> float:
    """Seconds one request may take in total: 2 × ``timeout`` + 2 s. Per-read timeouts
    cannot bound a peer that answers one byte at a time (reliability case 12c)."""
    return 2 * timeout + DEADLINE_GRACE_SECONDS


def deadline_exceeded(url: str, deadline: float) -> RetryableConnectorError:
    """Classified like a read timeout: the request went out, so it may have been processed
    (ambiguous), and a retry with the same idempotency key is safe."""
    parts = urlsplit(url)  # scheme and host only: no path, and base_url has no userinfo
    return RetryableConnectorError(
        f"no complete response from {parts.scheme}://{parts.netloc}: the destination answered "
        f"too slowly (total deadline exceeded after {deadline:g} s)",
        ambiguous=True,
    )


@contextmanager
def bounded_request(
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: float,
    redact: Redact,
    deadline: float | None = None,
    **kwargs: object,
) -> Iterator[requests.Response]:
    """One streamed request as every HTTP connector makes it: ``timeout`` for the connect
    and each read, redirects never followed, and the whole exchange (the body read inside
    the ``with`` included) cut off at ``attempt_deadline`` by ``connectors.deadline``.

    Transport failures come out as ``transport_error``'s ``ConnectorError``; whatever an
    attempt the watchdog cut raises (a cut status line can even parse as an answer) comes
    out as ``deadline_exceeded``. The response is closed on the way out, never reused.
    ``deadline`` replaces ``attempt_deadline`` for a caller that reads a large body.
    """
    deadline = attempt_deadline(timeout) if deadline is None else deadline
    with WATCHDOG.arm(deadline) as alarm:
        try:
            response = session.request(
                method,
                url,
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
                **kwargs,
            )
        except requests.RequestException as exc:
            if alarm.disarm():
                raise deadline_exceeded(url, deadline) from None
            raise transport_error(exc, redact, url=url, timeout=timeout) from exc
        try:
            yield response
        except Exception:
            if alarm.disarm():
                raise deadline_exceeded(url, deadline) from None
            raise
        finally:
            interrupted = alarm.disarm()
            response.close()
    if interrupted:
        raise deadline_exceeded(url, deadline)


def transport_error(
    exc: requests.RequestException, redact: Redact, *, url: str, timeout: float
) -> ConnectorError:
    """Classify a failure before any response arrived (timeouts, refused connections...)."""
    parts = urlsplit(url)
    target = f"{parts.scheme}://{parts.netloc}"  # no path: keep messages short and generic
    reason = redact(_root_cause(exc))
    if isinstance(exc, requests.ConnectTimeout):
        return RetryableConnectorError(f"could not connect to {target} within {timeout:g} s")
    if isinstance(exc, requests.Timeout):
        # The request went out and no answer came: it may have been processed (ambiguous).
        return RetryableConnectorError(
            f"no response from {target} within {timeout:g} s", ambiguous=True
        )
    if isinstance(exc, requests.exceptions.SSLError):
        # A certificate problem is configuration, not a blip: retrying for an hour won't help.
        return ConnectorError(f"TLS handshake with {target} failed: {reason}")
    if isinstance(exc, requests.ConnectionError):
        if _dropped_after_send(exc):
            return RetryableConnectorError(
                f"{target} dropped the connection before answering: {reason}", ambiguous=True
            )
        return RetryableConnectorError(f"could not connect to {target}: {reason}")
    return ConnectorError(f"request to {target} could not be sent: {reason}")


def _dropped_after_send(exc: BaseException) -> bool:
    """A connection reset/closed while waiting for the response (urllib3's "Connection
    aborted"), as opposed to one that never opened (refused, DNS): the request may have
    been sent."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, urllib3.exceptions.ProtocolError):
            return True
        nested = current.args[0] if current.args else None
        current = (
            current.__cause__
            or current.__context__
            or (nested if isinstance(nested, BaseException) else None)
        )
    return False


def _root_cause(exc: BaseException) -> str:
    # requests nests urllib3 errors several levels deep; the innermost is the readable one.
    seen: list[BaseException] = [exc]
    while True:
        current = seen[-1]
        nxt = current.__cause__ or current.__context__
        if nxt is None and current.args and isinstance(current.args[0], BaseException):
            nxt = current.args[0]
        if nxt is None and getattr(current, "reason", None) is not None:
            nxt = current.reason  # urllib3.MaxRetryError keeps it here
        if not isinstance(nxt, BaseException) or nxt in seen:
            break
        seen.append(nxt)
    innermost = seen[-1]
    if isinstance(innermost, OSError) and innermost.strerror:
        return innermost.strerror
    return str(innermost) or type(innermost).__name__
