"""REST market-data providers: one client foundation (`client.py`: HTTP, retries, rate limits, circuit breaker, cost
budget, audit trail, pagination; durable state in `state.py`) and one module per vendor (`massive.py`).

Pure modules: no Dagster import; `defs/reference.py` wraps them in resources and assets.
"""
