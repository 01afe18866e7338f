"""Issue #7 acceptance with REAL processes (gunicorn web, RQ worker, scheduler):

steady traffic to the built-in demo OMS → stop the OMS (``POST /demo/oms/outage``) → within
60 s the flow's technical owner gets an e-mail (real SMTP server) and the chat webhook (real
HTTP sink) names the flow, the failing system and the error → the alert links to a run whose
failing step shows its input → restart the OMS, bulk replay → the alerts resolve with MTTD and
MTTR recorded → the day's reconciliation lists zero differences → stop all traffic inside
business hours → a silence alert.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from app.demo import demo_api_key
from app.extensions import db
from app.models import Connection, System
from tests.e2e.test_processes import ORDER, procs, stack_env  # noqa: F401 (fixtures)
from tests.support.contracts import complete_contract
from tests.support.drafts import draft_flow, http_connection, submit_and_approve
from tests.support.processes import Processes, free_port, http, wait_for, wait_http
from tests.support.sink import Sink
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.slow

ALWAYS_OPEN = {"timezone": "UTC", "days": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "24:00"}
FLOW_NAME = "Web orders → demo OMS"


def call(method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    status, _, raw = http(
        method,
        url,
        body=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=15,
    )
    return status, (json.loads(raw) if raw else None)


def demo_flow(app: Any, make_user: Any, base_url: str) -> dict[str, Any]:
    """A live flow to the demo OMS served by the real web process, owned by tech.owner."""
    client = app.test_client()
    _, analyst = make_user("analyst")
    owner, owner_h = make_user("owner", "tech.owner@example.test")
    _, reviewer = make_user("owner")
    demo_oms = http_connection(
        f"{base_url}/demo/oms",
        name="Demo OMS",
        auth="api_key",
        timeout_seconds=5,
        secrets={"api_key": demo_api_key(app.config["SECRET_KEY"])},
    )
    draft = draft_flow(
        client,
        analyst,
        demo_oms,
        flow_name=FLOW_NAME,
        mapping="{'orderRef': $string(order_number)}",
        only_paid=False,
        layout=None,
        # One attempt: orders sent during the outage become dead letters to replay.
        retry={"max_attempts": 1, "backoff_seconds": 0.5, "max_backoff_seconds": 2},
    )
    contract = complete_contract(
        technical_owner_id=owner.id,
        sla={"max_latency_seconds": 60, "business_hours": ALWAYS_OPEN},
        on_call={"name": "On call", "email": "oncall@example.test", "webhook_url": None},
    )
    submit_and_approve(client, draft.base, analyst, reviewer, contract=contract)
    oms = db.session.query(System).filter_by(name="Test OMS").one()
    db.session.execute(update(Connection).values(system_id=oms.id))
    db.session.commit()
    return {"flow": draft.flow, "owner_token": owner_h["Authorization"].split()[1]}


class Traffic:
    """Posts one order every ``every`` seconds to the real web process until stopped."""

    def __init__(self, base_url: str, slug: str, every: float = 0.5) -> None:
        self.base_url, self.slug, self.every = base_url, slug, every
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        number = 50_000
        while not self.stop.is_set():
            number += 1
            body = json.dumps({**ORDER, "order_number": number}).encode()
            status, _, _ = http(
                "POST",
                f"{self.base_url}/hooks/{self.slug}",
                body=body,
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
            if status == 202:
                self.sent += 1
            self.stop.wait(self.every)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(15)


def alerts_of(base_url: str, token: str, flow_id: int, state: str) -> list[dict[str, Any]]:
    status, body = call("GET", f"{base_url}/api/v1/alerts?flow={flow_id}&state={state}", token)
    assert status == 200, body
    return body["items"]


def test_oms_outage_alerts_owner_within_60s_then_replay_resolves_and_reconciles(
    app: Any,
    make_user: Any,
    procs: Processes,  # noqa: F811
    stack_env: dict[str, str],  # noqa: F811
    smtp: SMTPTestServer,
    chat: Sink,
    tmp_path: Path,
    database_url: str,
) -> None:
    if not database_url.startswith("postgresql"):
        # Over a minute of real waiting per database; the alert rules, routing and silence
        # detection run on both databases in tests/app/test_alerts.py.
        pytest.skip("the whole-stack alert acceptance runs on PostgreSQL, production's database")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **stack_env,
        "FLOWGATE_SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
        "FLOWGATE_ALERT_WEBHOOK_URL": f"{chat.url}/chat",
        "FLOWGATE_ALERT_INTERVAL_SECONDS": "5",
        "FLOWGATE_PUBLIC_URL": base_url,
        "FLOWGATE_BREAKER_COOLDOWN_SECONDS": "3",
    }
    ctx = demo_flow(app, make_user, base_url)
    flow_id, token = ctx["flow"]["id"], ctx["owner_token"]
    procs.web(env, port)
    procs.worker(env)
    procs.scheduler(env)
    wait_http(f"{base_url}/api/v1/health", timeout=60, procs=procs)

    with Traffic(base_url, ctx["flow"]["slug"]) as traffic:
        wait_for(lambda: traffic.sent >= 6, timeout=30, what="steady traffic")
        assert alerts_of(base_url, token, flow_id, "active") == []

        # Stop the demo OMS.
        status, body = call("POST", f"{base_url}/demo/oms/outage", token, {"down": True})
        assert status == 200 and body == {"down": True}
        stopped = time.monotonic()

        def owner_mail() -> Any:
            procs.check_alive()
            return next(
                (m for m in smtp.messages if m.rcpt_tos == ["tech.owner@example.test"]), None
            )

        mail = wait_for(owner_mail, timeout=60, interval=0.5, what="the owner's alert e-mail")
        detected = time.monotonic() - stopped
        print(f"owner e-mail {detected:.1f}s after the OMS stopped")
        assert detected <= 60
        text = mail.message.get_content()
        assert FLOW_NAME in mail.message["Subject"] and "Test OMS" in mail.message["Subject"]
        assert "503" in text and "Test OMS" in text
        hook = wait_for(
            lambda: next((r for r in chat.requests if r.path == "/chat"), None),
            timeout=10,
            what="the chat webhook",
        ).json()
        assert hook["alert"]["flow"]["name"] == FLOW_NAME
        assert hook["alert"]["system"] == "Test OMS" and "503" in hook["alert"]["error"]
        assert hook["alert"]["link"].startswith(f"{base_url}/alerts/")

        # Alert → failing run → the failing step's input.
        [alert, *_] = alerts_of(base_url, token, flow_id, "active")
        status, run = call("GET", f"{base_url}/api/v1/runs/{alert['run_id']}", token)
        assert status == 200
        failing = [s for s in run["steps"] if s["step_id"] == "send_oms"]
        assert failing and failing[0]["status"] in ("retrying", "failed")
        assert failing[0]["input"]["orderRef"]

        # Restart the OMS; traffic flows again.
        status, _ = call("POST", f"{base_url}/demo/oms/outage", token, {"down": False})
        assert status == 200
        time.sleep(3)

    def settled() -> bool:
        procs.check_alive()
        status, body = call("GET", f"{base_url}/api/v1/runs?flow={flow_id}&limit=500", token)
        return status == 200 and all(
            r["status"] in ("succeeded", "dead_lettered") for r in body["items"]
        )

    wait_for(settled, timeout=90, interval=1, what="every run to finish")
    status, before = call("POST", f"{base_url}/api/v1/flows/{flow_id}/reconciliation", token, {})
    assert status == 201 and before["ok"] is False, before
    lost = {d["business_key"] for d in before["result"]["differences"]}
    assert lost and {d["status"] for d in before["result"]["differences"]} == {"dead_lettered"}
    # Bulk replay whatever the outage dead-lettered.
    status, body = call(
        "POST",
        f"{base_url}/api/v1/dead-letters/replay",
        token,
        {"filter": {"flow": flow_id}, "version": "original", "dry_run": False},
    )
    assert status == 202, body
    print(f"replayed {body['replayed']} dead letter(s)")
    assert body["replayed"] == len(lost)

    def all_delivered() -> bool:
        status, body = call("GET", f"{base_url}/api/v1/runs?flow={flow_id}&limit=500", token)
        return status == 200 and all(r["status"] == "succeeded" for r in body["items"])

    wait_for(all_delivered, timeout=90, interval=1, what="every run to be delivered")
    status, report = call("POST", f"{base_url}/api/v1/flows/{flow_id}/reconciliation", token, {})
    assert status == 201, report
    assert report["ok"] is True and report["result"]["differences"] == []
    assert report["result"]["totals"]["received"] == report["result"]["totals"]["delivered"]

    wait_for(
        lambda: alerts_of(base_url, token, flow_id, "active") == [],
        timeout=60,
        interval=1,
        what="the alerts to resolve",
    )
    resolved = alerts_of(base_url, token, flow_id, "resolved")
    outage = [a for a in resolved if a["kind"] in ("consecutive_failures", "breaker_open")]
    assert outage and all(a["resolution"] == "auto" for a in resolved)
    # MTTD: first failing message → alert (> 0, within the 60 s budget); MTTR: alert → resolved.
    assert all(0 < a["mttd_seconds"] <= 60 and a["mttr_seconds"] > 0 for a in outage)
    status, reliability = call("GET", f"{base_url}/api/v1/flows/{flow_id}/reliability", token)
    assert status == 200
    assert reliability["mttd_seconds_avg"] is not None and reliability["mttr_seconds_last"]
    print(
        f"MTTD avg {reliability['mttd_seconds_avg']}s MTTR avg {reliability['mttr_seconds_avg']}s"
    )

    # All traffic stopped inside business hours: a silence alert.
    status, _ = call(
        "PUT",
        f"{base_url}/api/v1/flows/{flow_id}/alert-rules",
        token,
        {"rules": [{"kind": "silence", "params": {"minutes": 1}}]},
    )
    assert status == 200
    silence = wait_for(
        lambda: [
            a for a in alerts_of(base_url, token, flow_id, "active") if a["kind"] == "silence"
        ],
        timeout=100,
        interval=1,
        what="a silence alert",
    )
    assert silence[0]["system"] == "Test shop"
