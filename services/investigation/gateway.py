"""The small client of the SMS/e-mail gateway."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from shared.logs import correlation_id


@dataclass(frozen=True)
class Message:
    channel: str  # sms | email
    to: str
    text: str
    reference: str  # acceptance number, for the customer


class GatewayError(Exception):
    """The gateway did not take the message. `permanent`: it refused the message itself
    (a 4xx other than 408/429), so sending it again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


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
                headers={"Idempotency-Key": key, "X-Request-ID": correlation_id.get() or key},
            )
        except httpx.HTTPError as exc:
            raise GatewayError(f"{type(exc).__name__}: {exc}"[:300]) from exc
        if response.status_code >= 300:
            status = response.status_code
            permanent = 400 <= status < 500 and status not in (408, 409, 425, 429)
            raise GatewayError(f"gateway answered {status}", permanent=permanent)
        try:
            return str(response.json().get("id", ""))
        except ValueError:
            return ""
