"""Token-bucket rate limiting for the ingestion API.

Each API key gets a bucket that refills at a steady rate. Requests take one
token; bursts are allowed up to the bucket's capacity. Buckets live in Redis so
that every worker process sees the same state.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import redis

log = logging.getLogger(__name__)

# Lua runs atomically inside Redis, so two workers can't both take the last token.
_TAKE_SCRIPT = """
local key = KEYS[1]
local capacity = tonumber(ARGV[1])
local refill_per_sec = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])

local state = redis.call('HMGET', key, 'tokens', 'updated')
local tokens = tonumber(state[1]) or capacity
local updated = tonumber(state[2]) or now

local elapsed = math.max(0, now - updated)
tokens = math.min(capacity, tokens + elapsed * refill_per_sec)

local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end

redis.call('HSET', key, 'tokens', tokens, 'updated', now)
redis.call('EXPIRE', key, math.ceil(capacity / refill_per_sec) * 2)
return {allowed, tostring(tokens)}
"""


@dataclass(frozen=True)
class Limit:
    """A bucket's shape: how many requests fit in a burst, and how fast it refills."""

    capacity: int
    refill_per_sec: float

    def __post_init__(self) -> None:
        if self.capacity <= 0:
            raise ValueError(f"capacity must be positive, got {self.capacity}")
        if self.refill_per_sec <= 0:
            raise ValueError(f"refill_per_sec must be positive, got {self.refill_per_sec}")

    @classmethod
    def per_minute(cls, n: int, burst: Optional[int] = None) -> "Limit":
        return cls(capacity=burst or n, refill_per_sec=n / 60.0)


@dataclass
class Decision:
    allowed: bool
    remaining: float
    retry_after: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class RateLimiter:
    def __init__(
        self,
        client: redis.Redis,
        default: Limit,
        overrides: Optional[dict[str, Limit]] = None,
        clock: Callable[[], float] = time.time,
        prefix: str = "rl:",
    ) -> None:
        self._client = client
        self._default = default
        self._overrides = overrides or {}
        self._clock = clock
        self._prefix = prefix
        self._take = client.register_script(_TAKE_SCRIPT)

    def limit_for(self, api_key: str) -> Limit:
        return self._overrides.get(api_key, self._default)

    def check(self, api_key: str, cost: int = 1) -> Decision:
        limit = self.limit_for(api_key)
        now = self._clock()
        try:
            allowed, remaining = self._take(
                keys=[self._prefix + api_key],
                args=[limit.capacity, limit.refill_per_sec, now, cost],
            )
        except redis.RedisError:
            # Fail open: an outage of the limiter must not become an outage of the API.
            log.warning("rate limiter unavailable; allowing request", exc_info=True)
            return Decision(allowed=True, remaining=float(limit.capacity))

        remaining = float(remaining)
        decision = Decision(allowed=bool(allowed), remaining=remaining)
        if not decision.allowed:
            missing = cost - remaining
            decision.retry_after = round(missing / limit.refill_per_sec, 3)
        decision.headers = {
            "X-RateLimit-Limit": str(limit.capacity),
            "X-RateLimit-Remaining": str(int(remaining)),
        }
        if decision.retry_after:
            decision.headers["Retry-After"] = str(max(1, int(decision.retry_after + 0.999)))
        return decision


def middleware(limiter: RateLimiter):
    """WSGI middleware that answers 429 when the caller's bucket is empty."""

    def wrap(app):
        def handler(environ, start_response):
            api_key = environ.get("HTTP_X_API_KEY", "anonymous")
            decision = limiter.check(api_key)
            if not decision.allowed:
                body = b'{"error":"rate_limited","message":"Too many requests"}'
                headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
                headers.extend(decision.headers.items())
                start_response("429 Too Many Requests", headers)
                return [body]

            def start_with_headers(status, headers, exc_info=None):
                headers = list(headers) + list(decision.headers.items())
                return start_response(status, headers, exc_info)

            return app(environ, start_with_headers)

        return handler

    return wrap


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    r = redis.Redis.from_url("redis://localhost:6379/0")
    limiter = RateLimiter(r, Limit.per_minute(120, burst=20), {"partner-key": Limit.per_minute(6000)})
    for i in range(25):
        d = limiter.check("demo")
        print(f"{i:02d} allowed={d.allowed} remaining={d.remaining:.2f} retry_after={d.retry_after}")
