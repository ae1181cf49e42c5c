"""Deliver events to webhooks: signed JSON POSTs, retried with backoff, each attempt recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta
from typing import Any

import httpx

from common.clock import utcnow
from common.policy import Policy
from control_plane.store import Store
from control_plane.store.db import write_transaction

log = logging.getLogger("tether.webhooks")
MAX_ATTEMPTS = 5
SIGNATURE_HEADER = "X-Tether-Signature"


def signature(secret: str, body: bytes) -> str:
    """Return the header value a receiver recomputes to trust a delivery."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver_due(store: Store, client: httpx.Client, now: datetime | None = None) -> int:
    """Attempt every delivery that is due; return how many were delivered."""
    now = now or utcnow()
    delivered = 0
    for delivery in store.events.due_deliveries(now):
        event = next(
            (
                e
                for e in store.events.list(environment=delivery["environment"], limit=5000)
                if e.id == delivery["event_id"]
            ),
            None,
        )
        secret = _secret(store, delivery["environment"], delivery["url"])
        attempts = delivery["attempts"] + 1
        error = None
        if event is None or secret is None:
            error = "the webhook is no longer configured"
        else:
            body = json.dumps(
                {
                    "event": event.kind,
                    "event_id": event.id,
                    "at": event.at.isoformat(),
                    "environment": event.environment,
                    "model": event.model,
                    "version": event.version,
                    "message": event.message,
                    **event.details,
                },
                sort_keys=True,
            ).encode()
            error = _post(client, delivery["url"], body, secret, event.kind, delivery["id"])
        ok = error is None
        final = ok or attempts >= MAX_ATTEMPTS or secret is None
        with write_transaction(store.db):
            store.events.finish_delivery(
                delivery["id"],
                status="delivered" if ok else ("failed" if final else "pending"),
                attempts=attempts,
                error=error,
                next_attempt_at=None if final else now + timedelta(seconds=2**attempts),
            )
            if final:
                store.events.record(
                    "webhook_delivery",
                    delivery["environment"],
                    delivery["model"],
                    f"webhook {'delivered' if ok else 'failed'} after {attempts} attempt(s): "
                    f"{delivery['url']}",
                    details={
                        "delivery_id": delivery["id"],
                        "event_id": delivery["event_id"],
                        "url": delivery["url"],
                        "attempts": attempts,
                        "error": error,
                    },
                    dedupe_key=f"delivery:{delivery['id']}",
                )
        delivered += ok
    return delivered


def _post(
    client: httpx.Client, url: str, body: bytes, secret: str, kind: str, delivery: int
) -> str | None:
    headers: dict[str, Any] = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret, body),
        "X-Tether-Event": kind,
        "X-Tether-Delivery": str(delivery),
    }
    try:
        response = client.post(url, content=body, headers=headers, timeout=5.0)
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"
    if response.is_success:
        return None
    return f"HTTP {response.status_code}"


def _secret(store: Store, environment: str, url: str) -> str | None:
    policy = Policy.model_validate(store.environments.policy(environment) or {})
    for hook in policy.drift.webhooks if policy.drift else []:
        if str(hook.url) == url:
            return hook.secret
    return None
