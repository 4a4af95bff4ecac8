"""A stand-in SMS/e-mail gateway for local use: it prints what it receives.

`make run` starts it on port 8025; the investigation service sends progress notices and
replies here. Like a real gateway it honours Idempotency-Key: a resent message is answered
with the first answer and printed once. `GET /messages` lists what arrived.

It is also a webhook receiver (`POST /webhooks`: a subscription's URL on intake): it keeps
every delivery with its Standard Webhooks headers, prints each `webhook-id` once, and lists
them at `GET /webhooks` (verify them with the subscription's secret, as the README shows).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Request, Response
from pydantic import BaseModel, Field


class Message(BaseModel):
    channel: str = Field(pattern="^(sms|email)$")
    to: str = Field(min_length=1, max_length=254)
    text: str = Field(min_length=1, max_length=20_000)
    reference: str = Field(default="", max_length=64)


def create_app() -> FastAPI:
    app = FastAPI(title="Local SMS/e-mail gateway")
    received: dict[str, dict[str, Any]] = {}
    app.state.received = received
    app.state.down = False  # tests switch it off and on
    app.state.reject = False  # …or make it refuse every message
    deliveries: list[dict[str, Any]] = []
    app.state.webhooks = deliveries
    #: Status codes to answer the next webhook deliveries with (tests make it fail), then 204.
    app.state.webhook_answers = []
    lock = asyncio.Lock()

    @app.post("/messages", status_code=202)
    async def take(
        message: Message,
        idempotency_key: Annotated[str, Header(min_length=1, max_length=255)],
        x_request_id: Annotated[str | None, Header(max_length=255)] = None,
    ) -> dict[str, Any]:
        """Take one message; the same key again returns the first answer."""
        if app.state.down:
            raise HTTPException(503, "gateway down")
        if app.state.reject:
            raise HTTPException(422, "message refused")
        async with lock:
            if idempotency_key in received:
                first: dict[str, Any] = received[idempotency_key]["answer"]
                return first
            answer = {
                "id": f"gw-{uuid.uuid4().hex[:12]}",
                "received_at": datetime.now(UTC).isoformat(),
            }
            received[idempotency_key] = {
                "message": message.model_dump(),
                "answer": answer,
                "request_id": x_request_id,
            }
        print(f"[{message.channel.upper()} to {message.to}] {message.text}", flush=True)
        return answer

    @app.get("/messages")
    async def listing() -> list[dict[str, Any]]:
        """Every message received, oldest first."""
        return [{"key": k, **v["message"], **v["answer"]} for k, v in received.items()]

    @app.post("/webhooks", status_code=204)
    async def hook(request: Request) -> Response:
        """Take one webhook delivery; it is kept (with its headers) whatever it is answered."""
        answers: list[int] = app.state.webhook_answers
        status = answers.pop(0) if answers else 204
        body = (await request.body()).decode()
        headers = {k: v for k, v in request.headers.items() if k.startswith("webhook-")}
        seen = any(d["headers"].get("webhook-id") == headers.get("webhook-id") for d in deliveries)
        deliveries.append({"headers": headers, "body": body, "answered": status})
        if status < 300 and not seen:
            print(f"[WEBHOOK {headers.get('webhook-id')}] {body[:200]}", flush=True)
        return Response(status_code=status)

    @app.get("/webhooks")
    async def hooks() -> list[dict[str, Any]]:
        """Every webhook delivery received (each attempt), oldest first."""
        return deliveries

    return app
