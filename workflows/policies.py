"""One set of timeouts and retry policies for every workflow's activities.

Transient failures (a provider's 5xx, a dropped connection, a database
restart) are retried with backoff; business failures are raised
non-retryable by the activities (``fulfil.errors``) and never retried.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from fulfil import errors


def _backoff(first: timedelta, longest: timedelta) -> RetryPolicy:
    """Retry transient failures forever, doubling the wait; business failures never."""
    return RetryPolicy(
        initial_interval=first,
        maximum_interval=longest,
        non_retryable_error_types=errors.NON_RETRYABLE,
    )


# PostgreSQL writes: quick, retried until the database is back.
DB_TIMEOUT = timedelta(seconds=15)
DB_RETRY = _backoff(timedelta(seconds=1), timedelta(seconds=30))

# Provider calls (Stripe, Shippo, TikTok, Cloudflare): idempotent, retried with backoff.
PROVIDER_TIMEOUT = timedelta(seconds=30)
PROVIDER_RETRY = _backoff(timedelta(seconds=1), timedelta(seconds=60))
# A provider down this long fails the order (and compensates) instead of holding stock forever.
PROVIDER_GIVE_UP = timedelta(minutes=30)

# Notifications (customer emails, merchant webhooks): never undo an order, so retried
# patiently, up to a deadline of their own.
NOTIFY_TIMEOUT = timedelta(seconds=30)
NOTIFY_RETRY = _backoff(timedelta(seconds=5), timedelta(minutes=30))
EMAIL_GIVE_UP = timedelta(hours=1)
WEBHOOK_GIVE_UP = timedelta(hours=24)


def transfer_retry(first_seconds: int) -> RetryPolicy:
    """A seller's transfer: a restricted account may take days to fix, so its payout retries
    patiently, from ``PAYOUT_TRANSFER_RETRY_SECONDS`` up to an hour apart (it is a workflow of
    its own: nobody else waits for it)."""
    return _backoff(timedelta(seconds=first_seconds), timedelta(hours=1))
