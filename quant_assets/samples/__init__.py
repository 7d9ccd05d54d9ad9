"""Local vendor servers for the tests, the demo and the benchmark: each speaks one provider's documented JSON over
the synthetic universe of `sample.py` (the same prices as the generated flat files) and can inject that vendor's own
failure quirks. `server.py` is what they share; `history.py` the daily bars they serve.

The Massive REST server is `sample_rest.py` (older than this folder).
"""
