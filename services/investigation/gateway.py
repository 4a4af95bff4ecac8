"""The small client of the SMS/e-mail gateway."""

from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Message:
    channel: str  # sms | email
    to: str
    text: str
    reference: str  # acceptance number, for the customer


class GatewayError(Exception):
    """The gateway did not take the message; it will be retried."""


class GatewayClient:
    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self.client = client

    async def send(self, message: Message, *, key: str) -> str:
        """Hand over one message; returns the gateway's id for it. The key makes a resend after
        a crash harmless: a gateway that honours it delivers the message once."""
        try:
            response = await self.client.post(
                self.url,
                json={
                    "channel": message.channel,
                    "to": message.to,
                    "text": message.text,
                    "reference": message.reference,
                },
                headers={"Idempotency-Key": key},
            )
        except httpx.HTTPError as exc:
            raise GatewayError(f"{type(exc).__name__}: {exc}"[:300]) from exc
        if response.status_code >= 300:
            raise GatewayError(f"gateway answered {response.status_code}")
        try:
            return str(response.json().get("id", ""))
        except ValueError:
            return ""
