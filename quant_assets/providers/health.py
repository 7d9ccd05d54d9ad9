"""Each provider's health, from what every client recorded in `data/providers/state.sqlite`: calls, failures and
failure rate, retries and time waited for rate slots, latency p50/p95, cache hits, the day's spending against the
budget, and the breaker with the time it tries again. `quant-assets providers` prints it; REST assets show their
run's share (`ClientStats`) and a check warns about a degraded provider.

A provider is `degraded` when its breaker is open or half-open, when more than `FAILURE_RATE_WARNING` of its calls
in the window failed, or when it has spent `BUDGET_WARNING` (80%) of its day's budget; `failing` when the breaker
is open and every call of the window failed.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from quant_assets.providers.state import ProviderState, state_dir

BUDGET_WARNING = 0.8
FAILURE_RATE_WARNING = 0.2
WINDOW_HOURS = 24.0


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def provider_health(data_root: str | Path, hours: float = WINDOW_HOURS, now: dt.datetime | None = None) -> list[dict]:
    """One summary per provider seen under `data_root` (calls in the last `hours`), sorted by name."""
    if not (state_dir(data_root) / "state.sqlite").exists():
        return []
    now = now or dt.datetime.now(dt.UTC)
    state = ProviderState(data_root)
    try:
        calls = state.calls(now.timestamp() - hours * 3600)
        policies = {row["provider"]: row for row in state.policies()}
        breakers = {row["name"]: row for row in state.breakers()}
        spending = state.spending()
    finally:
        state.close()
    names = sorted({c["provider"] for c in calls} | set(policies) | set(breakers))
    return [_summary(name, calls, policies.get(name, {}), breakers.get(name, {}), spending, now) for name in names]


def _summary(name: str, calls: list[dict], policy: dict, breaker: dict, spending: list[dict], now) -> dict[str, Any]:
    mine = [c for c in calls if c["provider"] == name]
    sent = [c for c in mine if c["outcome"] != "cache"]
    failures = [c for c in sent if c["outcome"] != "ok"]
    latencies = [c["latency"] for c in sent]
    zone = ZoneInfo(policy.get("budget_timezone") or "America/New_York")
    today = now.astimezone(zone).date().isoformat()
    spent = sum(r["cost"] for r in spending if r["provider"] == name and r["day"] == today)
    requests_today = sum(r["requests"] for r in spending if r["provider"] == name and r["day"] == today)
    budget = policy.get("daily_budget")
    share = spent / budget if budget else None
    state = breaker.get("state", "closed")
    retry_at = None
    if state != "closed" and breaker.get("opened_at") and policy.get("breaker_reset_seconds") is not None:
        opened = dt.datetime.fromisoformat(breaker["opened_at"])
        retry_at = opened + dt.timedelta(seconds=policy["breaker_reset_seconds"])
    rate = len(failures) / len(sent) if sent else None
    warnings = []
    if state != "closed":
        warnings.append(f"breaker {state}" + (f", tries again at {retry_at:%Y-%m-%d %H:%M:%S} UTC" if retry_at else ""))
    if rate is not None and rate > FAILURE_RATE_WARNING:
        warnings.append(f"{rate:.0%} of {len(sent)} calls failed")
    if share is not None and share >= BUDGET_WARNING:
        warnings.append(f"{share:.0%} of the day's budget spent")
    status = "ok"
    if warnings:
        status = "failing" if state == "open" and sent and len(failures) == len(sent) else "degraded"
    p50, p95 = _percentile(latencies, 0.5), _percentile(latencies, 0.95)
    return {
        "provider": name,
        "status": status,
        "warnings": warnings,
        "calls": len(sent),
        "failures": len(failures),
        "failure_rate": round(rate, 4) if rate is not None else None,
        "retries": sum(c["attempt"] > 1 for c in sent),
        "waited_seconds": round(sum(c["waited"] for c in sent), 3),
        "latency_p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
        "latency_p95_ms": round(p95 * 1000, 1) if p95 is not None else None,
        "cache_hits": len(mine) - len(sent),
        "requests_today": requests_today,
        "spent_today": round(spent, 6),
        "daily_budget": budget,
        "budget_share": round(share, 4) if share is not None else None,
        "breaker": state,
        "consecutive_failures": breaker.get("failures", 0),
        "breaker_retry_at": retry_at.isoformat() if retry_at else None,
        "seconds_until_retry": max(0.0, round(retry_at.timestamp() - now.timestamp(), 1)) if retry_at else None,
        "last_error": breaker.get("last_error"),
    }


def health_lines(rows: list[dict]) -> list[str]:
    """`provider_health` as the lines `quant-assets providers` prints."""
    lines = []
    for r in rows:
        latency = (
            f"p50 {r['latency_p50_ms']:g} ms, p95 {r['latency_p95_ms']:g} ms"
            if r["latency_p50_ms"] is not None
            else "-"
        )
        rate = f"{r['failure_rate']:.1%}" if r["failure_rate"] is not None else "-"
        budget = (
            f"{r['spent_today']:g} of {r['daily_budget']:g} ({r['budget_share']:.0%})"
            if r["daily_budget"]
            else f"{r['spent_today']:g} (no budget)"
        )
        lines.append(
            f"  {r['provider']}: {r['status'].upper()}" + (f" ({'; '.join(r['warnings'])})" if r["warnings"] else "")
        )
        lines.append(
            f"    calls {r['calls']}, failures {r['failures']} ({rate}), retries {r['retries']}, waited "
            f"{r['waited_seconds']:g} s, latency {latency}, cache hits {r['cache_hits']}"
        )
        breaker = r["breaker"] + (
            f", {r['consecutive_failures']} consecutive failures" if r["breaker"] != "closed" else ""
        )
        breaker += f", tries again in {r['seconds_until_retry']:g} s" if r["breaker_retry_at"] else ""
        lines.append(f"    today: {r['requests_today']} requests, spent {budget}; breaker {breaker}")
        if r["last_error"] and r["breaker"] != "closed":
            lines.append(f"    last error: {r['last_error']}")
    return lines
