"""The HTTP layer: merchants, catalogue, orders, provider webhooks, health."""
