"""Endpoint balancing: P2C over peak-EWMA cost, breaker-aware, static and DNS endpoint sets.

Clocks and RNGs are injected; DNS answers come from a scripted resolver. No sleeps.
"""

from __future__ import annotations

import random
import socket
from collections import Counter

import pytest

from meshclient.errors import ConfigurationError, NoEndpointAvailableError
from meshclient.transport.address import parse_address
from meshclient.transport.balancer import Balancer, DnsEndpoints, Endpoint, PeakEwma, StaticEndpoints
from meshclient.transport.breaker import BreakerSettings


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def trip(ep: Endpoint, n: int = 7) -> None:
    for _ in range(n):
        ep.breaker.record_failure()


def picks(balancer: Balancer, n: int, *, release: bool = True) -> Counter[str]:
    """Pick ``n`` times; count by address (probes are answered with success when ``release``)."""
    seen: Counter[str] = Counter()
    for _ in range(n):
        ep = balancer.pick()
        seen[ep.address] += 1
        if release and ep.breaker.state != "closed":
            ep.breaker.record_success()
    return seen


# -- addresses ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.7", ("10.0.0.7", 8080)),
        ("10.0.0.7:9000", ("10.0.0.7", 9000)),
        (" pod-a.svc:81 ", ("pod-a.svc", 81)),
        ("[fd00::7]:9000", ("fd00::7", 9000)),
        ("[fd00::7]", ("fd00::7", 8080)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text, 8080) == expected


def test_parse_address_wants_brackets_around_ipv6() -> None:
    with pytest.raises(ConfigurationError, match="brackets"):  # '::1:4143' is an address of its own
        parse_address("fd00::7", 8080)


def test_parse_address_rejects_a_bad_port() -> None:
    with pytest.raises(ConfigurationError, match="not a number"):
        parse_address("10.0.0.7:http", 8080)


def test_endpoint_address_brackets_ipv6() -> None:
    assert Endpoint("fd00::7", 80).address == "[fd00::7]:80"
    assert Endpoint("10.0.0.7", 80).address == "10.0.0.7:80"


def test_static_endpoints_need_at_least_one() -> None:
    with pytest.raises(ConfigurationError, match="at least one"):
        StaticEndpoints([], 443)


# -- peak EWMA ------------------------------------------------------------------------------------
def test_peak_ewma_starts_at_the_default_rtt() -> None:
    ewma = PeakEwma(clock=FakeClock())
    assert ewma.value == pytest.approx(0.030)
    assert ewma.cost() == pytest.approx(0.030)


def test_peak_ewma_jumps_to_a_slow_sample_at_once() -> None:
    ewma = PeakEwma(clock=FakeClock())
    ewma.observe(0.8)
    assert ewma.value == pytest.approx(0.8)


def test_peak_ewma_decays_towards_fast_samples_with_time() -> None:
    clock = FakeClock()
    ewma = PeakEwma(default_rtt=0.030, decay=10.0, clock=clock)
    ewma.observe(1.0)
    clock.advance(10.0)  # one decay constant: e**-1 of the old value remains
    ewma.observe(0.0)
    assert ewma.value == pytest.approx(1.0 * 0.36787944, rel=1e-6)
    clock.advance(0.0)
    ewma.observe(0.0)  # no time passed: no change
    assert ewma.value == pytest.approx(0.36787944, rel=1e-6)


def test_cost_grows_with_pending_requests() -> None:
    ewma = PeakEwma(clock=FakeClock())
    for _ in range(3):
        ewma.start()
    assert ewma.cost() == pytest.approx(0.030 * 4)
    for _ in range(5):  # never below zero
        ewma.finish()
    assert ewma.pending == 0
    assert ewma.cost() == pytest.approx(0.030)


def test_an_idle_slow_endpoints_cost_decays_with_time() -> None:
    """Regression: the estimate used to decay only inside observe(), i.e. when the endpoint got a
    request. tower's PeakEwma (what Linkerd runs) decays it on every load read (``load()`` calls
    ``rtt.decay(decay_ns)``, an update with rtt=0). Without that, one slow answer (a GC pause)
    makes an endpoint lose every P2C comparison — with two endpoints P2C always compares both —
    so it never gets another request and never recovers."""
    clock = FakeClock()
    ewma = PeakEwma(clock=clock)
    ewma.observe(2.0)
    clock.advance(100.0)  # ten decay constants later, without a request
    assert ewma.cost() < 0.030


# -- P2C ----------------------------------------------------------------------------------------------
def static(n: int, clock: FakeClock | None = None, **kw: object) -> StaticEndpoints:
    return StaticEndpoints([f"10.0.0.{i}:80" for i in range(1, n + 1)], 80, clock=clock or FakeClock(), **kw)  # type: ignore[arg-type]


def test_p2c_prefers_the_lower_cost_of_the_two_sampled() -> None:
    eps = static(2)
    slow, fast = eps.current()
    slow.latency.observe(0.5)
    balancer = Balancer(eps, service="svc", rng=random.Random(1))
    assert picks(balancer, 200) == Counter({fast.address: 200})


def test_p2c_spreads_over_equal_endpoints() -> None:
    balancer = Balancer(static(4), service="svc", rng=random.Random(7))
    seen = picks(balancer, 2000)
    assert set(seen) == {f"10.0.0.{i}:80" for i in range(1, 5)}
    assert min(seen.values()) > 300  # roughly 500 each


def test_p2c_never_picks_the_worst_of_three_but_uses_the_other_two() -> None:
    eps = static(3)
    worst = eps.current()[0]
    worst.latency.observe(1.0)
    seen = picks(Balancer(eps, service="svc", rng=random.Random(3)), 600)
    assert worst.address not in seen
    assert len(seen) == 2


def test_pending_requests_steer_traffic_away() -> None:
    eps = static(2)
    busy, idle = eps.current()
    for _ in range(3):
        busy.latency.start()
    assert picks(Balancer(eps, service="svc", rng=random.Random(5)), 100) == Counter({idle.address: 100})


def test_single_endpoint_is_always_chosen() -> None:
    eps = static(1)
    assert picks(Balancer(eps, service="svc"), 10) == Counter({"10.0.0.1:80": 10})


def test_exclude_avoids_the_endpoint_that_just_failed() -> None:
    eps = static(2)
    a, b = eps.current()
    balancer = Balancer(eps, service="svc", rng=random.Random(9))
    assert all(balancer.pick(exclude=a) is b for _ in range(50))
    single = static(1)
    only = single.current()[0]
    assert Balancer(single, service="svc").pick(exclude=only) is only  # nothing else to go to


def test_open_endpoints_get_no_traffic() -> None:
    eps = static(3)
    broken = eps.current()[1]
    trip(broken)
    seen = picks(Balancer(eps, service="svc", rng=random.Random(11)), 300)
    assert broken.address not in seen
    assert sum(seen.values()) == 300


def test_open_endpoint_is_skipped_even_when_it_looks_cheapest() -> None:
    eps = static(2)
    broken, healthy = eps.current()
    healthy.latency.observe(5.0)
    trip(broken)
    assert picks(Balancer(eps, service="svc", rng=random.Random(2)), 50) == Counter({healthy.address: 50})


def test_all_open_raises_naming_the_service() -> None:
    eps = static(2)
    for ep in eps.current():
        trip(ep)
    with pytest.raises(NoEndpointAvailableError, match="Every endpoint of fraud-model"):
        Balancer(eps, service="fraud-model").pick()


def test_probation_endpoint_gets_one_probe_then_nothing_until_it_answers() -> None:
    clock = FakeClock()
    eps = static(2, clock)
    broken, healthy = eps.current()
    trip(broken)
    balancer = Balancer(eps, service="svc", rng=random.Random(4))
    assert picks(balancer, 50) == Counter({healthy.address: 50})
    clock.advance(1.6)  # past the longest first back-off (1 s + 50 % jitter)
    seen = picks(balancer, 200, release=False)  # the probe never answers
    assert seen[broken.address] == 1
    assert seen[healthy.address] == 199
    broken.breaker.record_success()  # the probe succeeded
    seen = picks(balancer, 400)
    assert seen[broken.address] > 100  # back in rotation


def test_breaker_settings_reach_static_endpoints() -> None:
    clock = FakeClock()
    eps = static(1, clock, breaker=BreakerSettings(consecutive_failures=2, min_backoff=5, max_backoff=5, jitter=0))
    ep = eps.current()[0]
    trip(ep, 2)
    clock.advance(4.99)
    assert not ep.breaker.available()
    clock.advance(0.02)
    assert ep.breaker.available()


# -- DNS endpoints ---------------------------------------------------------------------------------
class ScriptedResolver:
    """Answers from a list, one per lookup; an exception instance in the list is raised."""

    def __init__(self, *answers: list[str] | Exception) -> None:
        self.answers = list(answers)
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, name: str, port: int) -> list[str]:
        self.lookups.append((name, port))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return list(answer)


NAME = "scorer.ml-serving.svc.cluster.local"


def hosts(eps: DnsEndpoints) -> list[str]:
    return [e.host for e in eps.current()]


def test_dns_resolves_on_first_use_and_again_on_schedule() -> None:
    clock = FakeClock()
    resolver = ScriptedResolver(["10.1.0.1"], ["10.1.0.1", "10.1.0.2"])
    eps = DnsEndpoints(NAME, 8080, refresh=5.0, clock=clock, resolver=resolver)
    assert resolver.lookups == []  # lazy
    assert hosts(eps) == ["10.1.0.1"]
    clock.advance(4.9)
    assert hosts(eps) == ["10.1.0.1"]
    assert hosts(eps) == ["10.1.0.1"]
    assert len(resolver.lookups) == 1  # not re-resolved within the refresh period
    clock.advance(0.1)
    assert hosts(eps) == ["10.1.0.1", "10.1.0.2"]
    assert resolver.lookups == [(NAME, 8080), (NAME, 8080)]
    assert all(e.port == 8080 for e in eps.current())


def test_dns_deduplicates_and_sorts_answers() -> None:
    eps = DnsEndpoints(NAME, 80, clock=FakeClock(), resolver=ScriptedResolver(["10.1.0.3", "10.1.0.1", "10.1.0.3"]))
    assert hosts(eps) == ["10.1.0.1", "10.1.0.3"]


def test_dns_refresh_keeps_state_for_surviving_addresses() -> None:
    clock = FakeClock()
    resolver = ScriptedResolver(["10.1.0.1", "10.1.0.2"], ["10.1.0.2", "10.1.0.3"])
    eps = DnsEndpoints(NAME, 80, refresh=5.0, clock=clock, resolver=resolver)
    first = {e.host: e for e in eps.current()}
    survivor = first["10.1.0.2"]
    survivor.latency.observe(0.7)
    trip(survivor)
    clock.advance(5.0)
    second = {e.host: e for e in eps.current()}
    assert set(second) == {"10.1.0.2", "10.1.0.3"}  # 10.1.0.1 left the answer
    assert second["10.1.0.2"] is survivor
    assert survivor.latency.value == pytest.approx(0.7)
    assert survivor.breaker.state == "open"  # a broken pod stays ejected across refreshes
    assert second["10.1.0.3"].breaker.state == "closed"


def test_dns_failure_keeps_the_last_good_answer_and_retries_on_schedule() -> None:
    clock = FakeClock()
    resolver = ScriptedResolver(["10.1.0.1", "10.1.0.2"], socket.gaierror(-2, "Name or service not known"),
                                ["10.1.0.9"])
    eps = DnsEndpoints(NAME, 80, refresh=5.0, clock=clock, resolver=resolver)
    before = eps.current()
    clock.advance(5.0)
    after = eps.current()
    assert [e.host for e in after] == ["10.1.0.1", "10.1.0.2"]
    assert all(a is b for a, b in zip(before, after, strict=True))
    assert len(resolver.lookups) == 2
    clock.advance(1.0)
    eps.current()
    assert len(resolver.lookups) == 2  # a failed lookup is not retried on every request
    clock.advance(4.0)
    assert hosts(eps) == ["10.1.0.9"]


def test_dns_with_no_answer_yet_raises_and_retries_on_the_next_call() -> None:
    clock = FakeClock()
    resolver = ScriptedResolver(socket.gaierror(-2, "Name or service not known"), ["10.1.0.1"])
    eps = DnsEndpoints(NAME, 80, refresh=30.0, clock=clock, resolver=resolver)
    with pytest.raises(NoEndpointAvailableError, match=NAME):
        eps.current()
    assert hosts(eps) == ["10.1.0.1"]  # no waiting for the refresh period while empty


def test_dns_endpoints_use_the_breaker_settings_and_clock() -> None:
    clock = FakeClock()
    eps = DnsEndpoints(NAME, 80, clock=clock, resolver=ScriptedResolver(["10.1.0.1"]),
                       breaker=BreakerSettings(consecutive_failures=1, min_backoff=3, max_backoff=3, jitter=0))
    ep = eps.current()[0]
    trip(ep, 1)
    assert ep.breaker.state == "open"
    clock.advance(3.0)
    assert ep.breaker.available()


def test_balancer_over_dns_skips_a_tripped_pod_across_refreshes() -> None:
    clock = FakeClock()
    resolver = ScriptedResolver(["10.1.0.1", "10.1.0.2"])
    eps = DnsEndpoints(NAME, 80, refresh=0.2, clock=clock, resolver=resolver)
    balancer = Balancer(eps, service="svc", rng=random.Random(8))
    bad = eps.current()[0]
    trip(bad)
    for _ in range(5):
        clock.advance(0.09)  # inside the shortest first back-off (0.5 s), across two refreshes
        assert balancer.pick().host == "10.1.0.2"
    assert len(resolver.lookups) >= 2


def test_default_resolver_reads_the_system_resolver() -> None:
    eps = DnsEndpoints("localhost", 80, clock=FakeClock())
    assert set(hosts(eps)) <= {"127.0.0.1", "::1"}
    assert hosts(eps)
