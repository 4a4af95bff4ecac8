"""Webhooks: subscriptions (configuration an admin keeps, not complaint events) and the
deliveries of the events they ask for, enqueued by a projection in the store's global order
and sent, signed per the Standard Webhooks spec, by intake's sender (services.intake.webhooks).
"""
