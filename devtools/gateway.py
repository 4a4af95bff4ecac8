"""A stand-in SMS/e-mail gateway for local use: it prints what it receives.

`make run` starts it on port 8025; the investigation service sends progress notices and
replies here. Like a real gateway it honours Idempotency-Key: a resent message is answered
with the first answer and printed once. `GET /messages` lists what arrived.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException
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

    return app
