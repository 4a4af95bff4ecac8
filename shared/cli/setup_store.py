"""Create the event store's tables once, before any service starts (services never do)."""

from __future__ import annotations

import asyncio

from shared.settings import Settings
from shared.store.facade import ComplaintStore


async def setup(settings: Settings) -> None:
    store = ComplaintStore(settings)
    try:
        await store.create_schema()
    finally:
        await store.close()


def main() -> None:
    settings = Settings()
    settings.check()
    asyncio.run(setup(settings))
    print(f"event store ready: {settings.url.render_as_string(hide_password=True)}")


if __name__ == "__main__":
    main()
