"""Complexity-based model choice: a route's `auto` target sends easy requests to the small side,
hard ones to the large side, and says which in a header and in metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from fleet.catalog import AutoTarget, CacheOptions, Route
from fleet.store import ROUTES
from fleet.validation import ValidationError, parse
from router.complexity import HeuristicScorer, Score
from router.inbound import ClientRequest, parse_request
from tests.router.conftest import INSTANT, Fleet
from tests.router.test_stream_resume import metric

EASY = "What is the capital of France?"
HARD = ("Prove that the sum of the first n odd numbers is n^2, then explain step by step how "
        "the same argument generalises, and analyze where induction is needed.")


def chat_request(content: str, **extra: Any) -> ClientRequest:
    return parse_request("/v1/chat/completions", orjson.dumps(
        {"model": "auto", "messages": [{"role": "user", "content": content}], **extra}))


# -- pure parts -------------------------------------------------------------------------------

def test_route_accepts_auto_cache_and_resume_options_and_stays_backward_compatible() -> None:
    route = parse(Route, {"targets": [{"auto": {"small": "qwen7b", "large": "org/Qwen-72B"}},
                                      {"upstream": "https://api.example.com/v1"}],
                          "cache": {"ttl_s": 60, "shared": True}, "stream_resume": False})
    assert isinstance(route.targets[0], AutoTarget) and route.targets[0].auto.threshold == 0.7
    assert route.cache == CacheOptions(ttl_s=60.0, shared=True)
    old = parse(Route, {"targets": [{"pool": "p"}]})
    assert old.stream_resume is True and old.cache is None


@pytest.mark.parametrize(("doc", "param"), [
    ({"targets": [{"auto": {"small": "a", "large": "b"}},
                  {"auto": {"small": "c", "large": "d"}}]}, "targets[1]"),
    ({"targets": [{"auto": {"small": "a", "large": "a"}}]}, "targets[0].small"),
    ({"targets": [{"auto": {"small": "a", "large": "b", "threshold": 1.5}}]},
     "targets[0].auto.threshold"),
    ({"targets": [{"pool": "p"}], "cache": {"ttl_s": 0}}, "cache.ttl_s"),
    ({"targets": [{"pool": "p"}], "cache": {"sharde": True}}, "cache.sharde"),
])
def test_bad_route_options_are_refused_naming_the_field(doc: dict[str, Any], param: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(Route, doc)
    assert caught.value.param is not None and caught.value.param.endswith(param.split(".")[-1])


def test_each_signal_raises_the_score_and_simple_tasks_lower_it() -> None:
    scorer = HeuristicScorer()
    base = scorer.score(chat_request("Tell me about rivers.")).value
    assert scorer.score(chat_request(EASY)).value <= base
    for harder in (chat_request("Tell me about rivers. Derive the flow equation."),
                   chat_request("Tell me about rivers.\n```python\ndef flow(): return 1\n```"),
                   chat_request("Tell me about rivers and explain why they meander, step by step."),
                   chat_request("Tell me about rivers.", max_tokens=3000)):
        assert scorer.score(harder).value > base
    assert 0.0 <= scorer.score(chat_request(HARD)).value <= 1.0
    assert scorer.score(chat_request(HARD)).value >= 0.7 > scorer.score(chat_request(EASY)).value


# -- real processes ---------------------------------------------------------------------------

async def auto_fleet(start_sim: Any, fleet: Fleet, small: str, large: str,
                     threshold: float = 0.7) -> None:
    small_sim = await start_sim("small-m", *INSTANT)
    large_sim = await start_sim("large-m", *INSTANT)
    await fleet.put_pool("small", "small-m")
    await fleet.put_pool("large", "large-m")
    await fleet.add_worker(small_sim, pool="small")
    await fleet.add_worker(large_sim, pool="large")
    await fleet.store.put_doc(ROUTES, "auto", {"targets": [
        {"auto": {"small": small, "large": large, "threshold": threshold}}]})
    await fleet.store.publish("routes")


async def ask(client: Any, content: str) -> tuple[str, str, str]:
    raw = await client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": content}])
    return (raw.headers["x-flotilla-complexity"], raw.headers["x-flotilla-target"],
            raw.parse().model)


async def wait_route(router: Any, model: str = "auto") -> None:
    for _ in range(200):
        if model in router.runtime.keeper.snapshot().routes:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("route never reached the router")


async def test_easy_requests_go_to_the_small_pool_and_hard_ones_to_the_large(
        start_sim, fleet: Fleet, start_router) -> None:
    await auto_fleet(start_sim, fleet, "small", "large")
    router = await start_router(no_auth=True)
    await router.wait_workers(2)
    await wait_route(router)
    client = router.client()
    header, target, model = await ask(client, EASY)
    assert header.endswith("choice=small") and target == "pool:small" and model == "small-m"
    assert float(header.split(";")[0]) < 0.7
    header, target, model = await ask(client, HARD)
    assert header.endswith("choice=large") and target == "pool:large" and model == "large-m"
    assert await metric(router.url, 'flotilla_router_complexity_choices_total{choice="large",'
                                    'model="auto"}') == 1
    assert await metric(router.url, 'flotilla_router_complexity_choices_total{choice="small",'
                                    'model="auto"}') == 1


async def test_auto_sides_may_name_models_and_the_scorer_can_be_replaced(
        start_sim, fleet: Fleet, start_router) -> None:
    await auto_fleet(start_sim, fleet, "small-m", "large-m", threshold=0.5)
    router = await start_router(no_auth=True)
    await router.wait_workers(2)
    await wait_route(router)

    class LongIsHard:  # a stand-in for a learned router: anything with score()
        name = "long-is-hard"

        def score(self, request: ClientRequest) -> Score:
            return Score(1.0 if len(request.body) > 120 else 0.0)

    router.runtime.scorer = LongIsHard()
    client = router.client()
    _, target, model = await ask(client, "short")
    assert (target, model) == ("pool:small", "small-m")
    header, target, model = await ask(client, "long " * 40)
    assert header == "1.000; choice=large" and (target, model) == ("pool:large", "large-m")
