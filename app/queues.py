"""RQ queues. Jobs carry run ids only and use the JSON serializer (no pickle from Redis)."""

from __future__ import annotations

from flask import Flask
from rq import Queue
from rq.serializers import JSONSerializer

from app.redis_conn import get_redis

EXECUTE_RUN = "flows.jobs.execute_run"


def run_queue(app: Flask) -> Queue:
    return Queue(
        app.config["FLOWGATE_QUEUE_NAME"],
        connection=get_redis(app),
        serializer=JSONSerializer,
        default_timeout=300,
    )


def job_id_for(run_id: int, queue_name: str) -> str:
    """Namespaced by queue: two installations (or test sessions) sharing a Redis database
    must not overwrite each other's job hashes."""
    return f"{queue_name}-run-{run_id}"


def enqueue_runs(app: Flask, run_ids: list[int]) -> None:
    """Enqueue runs (pipelined). Losing this call is safe: the sweep re-enqueues."""
    if not run_ids:
        return
    queue = run_queue(app)
    queue.enqueue_many(
        [
            Queue.prepare_data(
                EXECUTE_RUN,
                args=(run_id,),
                job_id=job_id_for(run_id, queue.name),
                result_ttl=60,
                failure_ttl=86400,
            )
            for run_id in run_ids
        ]
    )
