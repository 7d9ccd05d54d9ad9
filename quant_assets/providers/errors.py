"""What a provider call can fail with. Every message names the provider and the endpoint, and never the key."""


class ProviderError(Exception):
    """A provider request that did not give a usable answer."""


class BudgetExhausted(ProviderError):
    """The provider's daily cost budget would be exceeded by the next request; nothing was sent."""


class RateLimited(ProviderError):
    """The provider's rate limits (ours, per key) would make the request wait longer than `Policy.max_wait`: a
    day's quota is used up. Nothing was sent or spent; the provider is unavailable until the wait is over."""


class CircuitOpen(ProviderError):
    """The provider's circuit breaker is open: calls fail fast until its reset timeout has passed."""


class MalformedResponse(ProviderError):
    """The provider answered, but not in the documented shape (not JSON, NaN or Infinity included, or missing
    fields)."""


class BoundExceeded(ProviderError):
    """An answer passed one of the client's bounds: a body longer than `Policy.max_bytes` (or its endpoint's
    override), or a listing with more than `Policy.max_pages` pages or `Policy.max_rows` results. The answer is not
    returned (a listing stops there, incomplete). Not retried and not counted against the circuit breaker: the
    provider did answer, and the same request would get the same answer. `bound` is the `Policy` field passed."""

    def __init__(self, message: str, bound: str):
        super().__init__(message)
        self.bound = bound


class RequestFailed(ProviderError):
    """A request failed for good: a status that is not retried (4xx), or retries exhausted."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class VendorError(ProviderError):
    """The vendor answered HTTP 200 with an error in the body (Alpha Vantage's `Information`, `Note` and `Error
    Message`, Tiingo's `detail` or plain-text over-quota answer, Finnhub's `error`). `kind` says which:
    `rate_limited`, `not_entitled`, `invalid` (the request, or the symbol) or `unknown`. Not retried and not counted
    by the breaker (the same request gets the same answer today); the request counts against the budget."""

    def __init__(self, message: str, kind: str = "unknown"):
        super().__init__(message)
        self.kind = kind
