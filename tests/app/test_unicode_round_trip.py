"""Text survives the trip webhook → SQL → JSONata → destination unchanged (reliability case
22): 4-byte emoji, right-to-left script, combining marks (not normalised), CJK, and a
valid surrogate pair written as JSON escapes. On SQLite and PostgreSQL."""

from __future__ import annotations

import json

from tests.app.test_walking_skeleton import ORDER, live_flow

NAMES = [
    "🛒🎁 Gift-Box 👩🏽‍💻",  # 4-byte code points and a ZWJ sequence
    "شال صوف",  # Arabic (right to left)
    "טלית ✡",  # Hebrew
    "Cafe\u0301 e\u0300",  # combining accents: must not become the precomposed é / è
    "蛍光ペン 黄色",  # CJK
    "Ωmega ß İ ǅ",  # case-mapping traps
]


def test_every_script_reaches_the_destination_exactly_as_sent(client, make_user, sink, run_worker):
    ctx = live_flow(client, make_user, sink)
    order = {
        **ORDER,
        "line_items": [
            {**ORDER["line_items"][0], "sku": name, "quantity": i + 1}
            for i, name in enumerate(NAMES)
        ],
    }
    # Sent as UTF-8, except one SKU written with JSON escapes of a surrogate pair.
    raw = json.dumps(order, ensure_ascii=False).replace("🛒", "\\ud83d\\uded2").encode()
    accepted = client.post(
        f"/hooks/{ctx['flow']['slug']}", data=raw, content_type="application/json"
    )
    assert accepted.status_code == 202, accepted.get_json()
    run_worker()

    (request,) = sink.requests
    sent = [line["sku"] for line in request.json()["lines"]]
    assert sent == NAMES
    assert [len(s) for s in sent] == [len(s) for s in NAMES]  # nothing normalised
    run = client.get(
        f"/api/v1/runs/{accepted.get_json()['run_id']}", headers=ctx["headers"]
    ).get_json()
    assert run["status"] == "succeeded"
    assert [line["sku"] for line in run["payload"]["line_items"]] == NAMES
