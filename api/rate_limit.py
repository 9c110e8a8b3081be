"""Fixed-window request counting in Redis: one counter per key (or client IP) and window.

``INCR`` then ``EXPIRE`` in one round trip; the first request over the limit
gets the seconds left in the window (``Retry-After``). When Redis does not
answer, requests are let through (fail open, without asking it again for
``SKIP_AFTER_FAILURE_SECONDS``) and a warning is logged once a minute: a cache
outage must not take the API down with it, and every write path has its own
safeguards (idempotency keys, stock checks).
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

OUTAGE_LOG_INTERVAL = 60.0
# After Redis fails, requests go unlimited this long without asking it (a hung Redis would
# otherwise add its socket timeout to every request).
SKIP_AFTER_FAILURE_SECONDS = 5.0


class RateLimiter:
    def __init__(self, redis: Redis, *, prefix: str = "rl") -> None:
        self._redis = redis
        self._prefix = prefix
        self._last_outage_log = 0.0
        self._skip_until = 0.0

    async def hit(self, bucket: str, limit: int, window_seconds: int) -> int | None:
        """Count one request; the seconds to wait when it is over ``limit``, else None."""
        now = time.time()
        if now < self._skip_until:
            return None  # Redis failed moments ago: do not make every request wait for it
        window = int(now // window_seconds)
        key = f"{self._prefix}:{bucket}:{window_seconds}:{window}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, window_seconds + 1, nx=True)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as err:
            self._skip_until = now + SKIP_AFTER_FAILURE_SECONDS
            if now - self._last_outage_log > OUTAGE_LOG_INTERVAL:
                self._last_outage_log = now
                log.warning(
                    "rate limiting is off: Redis does not answer", extra={"error": str(err)}
                )
            return None
        if int(count) <= limit:
            return None
        return max(1, int((window + 1) * window_seconds - now + 0.999))
