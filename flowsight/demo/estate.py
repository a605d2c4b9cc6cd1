"""The simulated retail estate: channels, systems and how long each step of an order takes.

Timings are log-normal (a median and a spread) in simulated seconds, chosen so a healthy day
keeps every stage inside its SLA and every SLO inside its budget; each step also fails now and
then and is retried, as real integrations do.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

CHANNELS: tuple[tuple[str, float], ...] = (
    ("web", 0.45),
    ("app", 0.30),
    ("store_pickup", 0.10),
    ("marketplace", 0.15),
)
"""Channels and their share of orders. Marketplace orders arrive in batches (see the simulator)."""

SYSTEMS = ("oms", "payments", "tax", "middleware", "erp", "wms", "shipping", "crm", "marketplace")


@dataclass(frozen=True)
class Step:
    """One lifecycle stage: who performs it, how long after the previous one, how it fails.

    ``calls`` is the system the step calls on the way (a span of that system under the step's
    own span): payments asks tax, the ERP goes through the middleware, and so on."""

    stage: str
    system: str
    median_s: float
    spread: float = 0.5
    fail: float = 0.01
    retry_s: float = 300.0
    calls: str | None = None
    operation: str = ""


ORDER_TO_CASH: tuple[Step, ...] = (
    Step("order_created", "oms", 0, calls="crm", operation="POST /orders"),
    Step("payment_authorized", "payments", 20, 0.45, 0.001, 60, "tax", "POST /payments/authorize"),
    Step("inventory_reserved", "erp", 60, 0.45, 0.001, 120, "middleware", "reserve inventory"),
    Step("erp_order_created", "erp", 120, 0.45, 0.001, 180, "middleware", "create sales order"),
    Step("fulfillment_released", "wms", 360, 0.45, 0.001, 240, "erp", "release for picking"),
    Step("shipped", "shipping", 3 * 3600, 0.45, 0.001, 900, "wms", "hand over to carrier"),
    Step("invoiced", "erp", 900, 0.45, 0.001, 600, "middleware", "post invoice"),
)

RETURN_TO_REFUND: tuple[Step, ...] = (
    Step("return_requested", "oms", 0, calls="crm", operation="POST /returns"),
    Step("return_received", "wms", 12 * 3600, 0.5, 0.001, 1800, "erp", "receive return"),
    Step("refund_issued", "payments", 3 * 3600, 0.45, 0.001, 900, "tax", "POST /refunds"),
    Step("refund_posted", "erp", 900, 0.45, 0.001, 600, "middleware", "post credit note"),
)


@dataclass(frozen=True)
class Estate:
    """The knobs of a simulated retailer."""

    orders_per_minute: float = 6.0
    return_share: float = 0.08
    return_after_s: float = 86400.0
    cancel_share: float = 0.01
    marketplace_batch_s: float = 300.0
    """Marketplace orders reach the OMS in batches this far apart (their creation time is older)."""
    orders: tuple[Step, ...] = ORDER_TO_CASH
    returns: tuple[Step, ...] = RETURN_TO_REFUND


def gap(step: Step, rng: random.Random, factor: float = 1.0) -> float:
    """How long after the previous stage this step happens, in simulated seconds."""
    if step.median_s <= 0:
        return 0.0
    return step.median_s * factor * math.exp(rng.gauss(0.0, step.spread))


def channel(rng: random.Random) -> str:
    pick = rng.random()
    for name, share in CHANNELS:
        if pick < share:
            return name
        pick -= share
    return CHANNELS[-1][0]


def arrivals(rng: random.Random, rate_per_minute: float, start: float, end: float) -> list[float]:
    """Poisson arrival times in ``[start, end)``, with a daily rhythm (busiest in the evening)."""
    out: list[float] = []
    t = start
    # Thinned from a peak rate: the acceptance below averages 0.7 over a day (0.4 at night,
    # 1.0 in the evening), so the mean rate is ``rate_per_minute``.
    peak = rate_per_minute / 60.0 / 0.7
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return out
        hour = (t % 86400) / 3600
        if rng.random() < 0.7 + 0.3 * math.sin((hour - 13) / 24 * 2 * math.pi):
            out.append(t)
