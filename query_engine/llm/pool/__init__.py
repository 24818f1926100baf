"""The vLLM pool: spreads chat completions over many vLLM servers, fails over, pushes back.

``LLMPool`` (``llm_pool.py``) owns the endpoints (from a
:class:`~query_engine.llm.endpoints.Discovery`, kept current by ``membership.py``), one watcher
task per endpoint (``/health`` + ``/v1/models`` probes, ``/metrics`` scrapes: ``health.py``),
the bounded wait queue and one shared httpx client. A request:

1. is admitted (``dispatch.py``): the policy (``policy.py``) picks an endpoint that serves the
   requested model and has room; when none has room it waits in the queue, and when the queue
   is full (or the wait too long) it is refused with :class:`~docqa_core.errors.RateLimited`
   (HTTP 429 + Retry-After);
2. runs on that endpoint (``completions.py``); a failure that is the server's fault is retried
   on *another* endpoint (``failover.py``): a non-streamed request until it completes, a
   streamed one until its first token (the rest is read through ``stream.py``); after that the
   caller gets :class:`~docqa_core.errors.DependencyUnavailable`;
3. releases its slot, feeding the endpoint's circuit breaker, and wakes the next waiter.

Everything runs on one event loop; the slot bookkeeping is synchronous, so it cannot race.
"""

from query_engine.llm.pool.config import PoolConfig, Route
from query_engine.llm.pool.errors import NoEndpoint
from query_engine.llm.pool.llm_pool import LLMPool
from query_engine.llm.pool.stream import PoolStream

__all__ = ["LLMPool", "NoEndpoint", "PoolConfig", "PoolStream", "Route"]
