"""Many simulated calls at once: the load runner and its report."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from simulator.client import Simulator
from simulator.model import Scenario


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(fraction * len(ordered)))) - 1]


@dataclass
class LoadReport:
    """What a load run measured."""

    calls: int
    seconds: float
    answer_ms: list[float]
    event_ms: list[float]
    failures: list[str]

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        return [
            f"calls        {self.calls} in {self.seconds:.2f} s = {self.calls_per_second:.1f} calls/s",
            f"answer       p50 {percentile(self.answer_ms, 0.5):.1f} ms  p99 {percentile(self.answer_ms, 0.99):.1f} ms",
            f"events       {len(self.event_ms)} sent, p50 {percentile(self.event_ms, 0.5):.1f} ms  "
            f"p99 {percentile(self.event_ms, 0.99):.1f} ms",
            f"failures     {len(self.failures)}" + (f" (first: {self.failures[0]})" if self.failures else ""),
        ]


def run_load(
    simulator: Simulator,
    number: str,
    calls: int,
    concurrency: int,
    outcome: str = "answered",
    duration: int = 5,
    user: str = "Alice",
    scenario: Scenario | None = None,
) -> LoadReport:
    """Run `calls` simulated calls, `concurrency` at a time: to `number`, or of `scenario`'s shape when given."""
    scenario = scenario or Scenario("outbound", number, user, outcome=outcome, duration=duration)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda _: simulator.play(scenario), range(calls)))
    seconds = time.perf_counter() - started
    return LoadReport(
        calls=calls,
        seconds=seconds,
        answer_ms=[result.answer.latency_ms for result in results],
        event_ms=[event.latency_ms for result in results for event in result.events],
        failures=[problem for result in results for problem in result.problems],
    )
