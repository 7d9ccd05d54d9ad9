"""What a provider call can fail with. Every message names the provider and the endpoint, and never the key."""


class ProviderError(Exception):
    """A provider request that did not give a usable answer."""


class BudgetExhausted(ProviderError):
    """The provider's daily cost budget would be exceeded by the next request; nothing was sent."""


class CircuitOpen(ProviderError):
    """The provider's circuit breaker is open: calls fail fast until its reset timeout has passed."""


class MalformedResponse(ProviderError):
    """The provider answered, but not in the documented shape (not JSON, or missing fields)."""


class RequestFailed(ProviderError):
    """A request failed for good: a status that is not retried (4xx), or retries exhausted."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status
