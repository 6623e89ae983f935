"""`python -m bench.intake_parts`: what each part of a work-creating delivery costs, alone.

CPU time (this process only; the servers' share is not in it) per operation, over a few
thousand repetitions, on this run's own PostgreSQL database and Redis number:
verification, the ORM insert as the receiver does it (session, pre-ping, commit), a Core
INSERT on a held connection, RQ's enqueue with its retry policy, and a bare Redis LPUSH.
Wall time per operation is given too: on a busy machine it shows the round trips waiting.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.intake import deliveries
from bench.stack import Stack


def measure(name: str, operation: Callable[[int], Any], repeat: int) -> dict[str, Any]:
    for i in range(min(50, repeat)):  # warm caches, pools, compiled statements
        operation(-1 - i)
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(repeat):
        operation(i)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"part": name, "cpu_us": cpu / repeat * 1e6, "wall_us": wall / repeat * 1e6, "repeat": repeat}


def main(argv: list[str] | None = None) -> int:
    repeat = int((argv or sys.argv[1:] or ["3000"])[0])
    run_dir = Path(__file__).resolve().parent / "results" / f"parts-{time.strftime('%Y%m%d-%H%M%S')}"
    with Stack(run_dir) as stack:
        import sqlalchemy as sa
        from werkzeug.datastructures import Headers

        from plugin import services as services_module
        from plugin.models import Delivery
        from webhooks.verify import verify

        services = services_module.build(stack.config())
        body, signature = deliveries("delayed", 1, stack.api_secret, 5_300_000_000_000)[0]
        headers = Headers(
            {
                "X-Shopify-Hmac-Sha256": signature,
                "X-Shopify-Topic": "fulfillment_events/create",
                "X-Shopify-Shop-Domain": "bench-shop.myshopify.com",
                "X-Shopify-Webhook-Id": "x",
            }
        )
        secrets = services.config.webhook_secrets
        run = uuid.uuid4().hex[:8]
        results = [measure("verify (HMAC + JSON)", lambda i: verify(body, headers, secrets), repeat)]

        def orm_insert(i: int) -> None:
            with services.db.session() as session:
                session.add(
                    Delivery(
                        webhook_id=f"orm-{run}-{i}",
                        topic="fulfillment_events/create",
                        shop_domain="bench-shop.myshopify.com",
                        payload=body.decode(),
                        state="pending",
                    )
                )

        results.append(measure("ORM insert + commit (as the receiver)", orm_insert, repeat))

        statement = sa.insert(Delivery)
        connection = services.db.engine.connect()

        def core_insert(i: int) -> None:
            connection.execute(
                statement,
                {
                    "webhook_id": f"core-{run}-{i}",
                    "topic": "fulfillment_events/create",
                    "shop_domain": "bench-shop.myshopify.com",
                    "payload": body.decode(),
                    "state": "pending",
                },
            )
            connection.commit()

        results.append(measure("Core INSERT + commit (held connection)", core_insert, repeat))
        connection.close()

        queue = services.queue
        results.append(
            measure(
                "RQ enqueue with retry policy (as the receiver)",
                lambda i: queue.enqueue("actions.deliveries.process_delivery", i, job_id=f"d-{run}-{i}"),
                repeat,
            )
        )
        redis = stack.redis()
        results.append(measure("Redis LPUSH of the id", lambda i: redis.lpush(f"bench:{run}", i), repeat))
        redis.close()
        services.close()

        # Whole requests through Flask's test client (no gunicorn, no sockets): the view and
        # the framework, baseline and Amends side by side in one process.
        import os

        os.environ["SHOPIFY_API_SECRET"] = stack.api_secret
        from bench.baseline_app import create_app as create_baseline
        from wsgi import create_app

        amends = create_app(stack.config())
        in_transit = deliveries("in_transit", 1, stack.api_secret, 5_400_000_000_000)[0]
        for label, app, (payload, hmac) in (
            ("request: baseline app", create_baseline(), (body, signature)),
            ("request: Amends, in_transit (no work)", amends, in_transit),
            ("request: Amends, delayed (work)", amends, (body, signature)),
        ):
            client = app.test_client()

            def post(
                i: int, client: Any = client, payload: bytes = payload, hmac: str = hmac, label: str = label
            ) -> None:
                answer = client.post(
                    "/webhooks",
                    data=payload,
                    headers={
                        "Content-Type": "application/json",
                        "X-Shopify-Topic": "fulfillment_events/create",
                        "X-Shopify-Shop-Domain": "bench-shop.myshopify.com",
                        "X-Shopify-Webhook-Id": f"tc-{run}-{label[:12]}-{i}",
                        "X-Shopify-Hmac-Sha256": hmac,
                    },
                )
                assert answer.status_code == 200, answer.get_data()

            results.append(measure(label, post, repeat))
        amends.extensions["amends"].close()

    width = max(len(r["part"]) for r in results)
    print(f"{'part'.ljust(width)}  CPU µs/op  wall µs/op")
    for r in results:
        print(f"{r['part'].ljust(width)}  {r['cpu_us']:9.0f}  {r['wall_us']:10.0f}")
    (run_dir.parent / "intake-parts-latest.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
