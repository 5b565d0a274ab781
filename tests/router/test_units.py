"""Pure pieces of the router: request checks, error shapes, SSE transcript, plans, limits, keys."""

from __future__ import annotations

import time

import orjson
import pytest

from fleet.catalog import ApiKeyRecord, Pool, Route
from fleet.memory_store import MemoryFleetStore
from fleet.schemas import WorkerRecord
from fleet.secrets import display_prefix, new_api_key, sha256_hex
from fleet.store import KEYS
from fleet.validation import parse
from router.auth import KeyCache, Principal
from router.errors import RequestRejected, RouterError, normalise_error_body, retry_after_headers
from router.inbound import parse_request
from router.limits import RateLimiter, window_key
from router.relay import _boundary, stream_error_frame, usage_of_body
from router.routing import Planner, build_plan
from router.snapshot import FleetSnapshot
from router.transcript import StreamTranscript

# -- request checks ------------------------------------------------------------------------------


def test_parse_request_keeps_the_original_bytes_and_rewrites_only_on_demand() -> None:
    body = (b'{"model": "a", "messages": [], "stream": true, '
            b'"stream_options": {"include_usage": true}}')
    request = parse_request("/v1/chat/completions", body)
    assert request.stream and request.include_usage and request.model == "a"
    assert request.body_for(None) is body and request.body_for("a") is body
    assert orjson.loads(request.body_for("b"))["model"] == "b"


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/embeddings", b'{"model": "e"}', "input"),
    ("/v1/embeddings", b'{"model": "e", "input": 3}', "input"),
    ("/v1/completions", b'{"model": "c", "prompt": {}}', "prompt"),
    ("/v1/chat/completions", b'{"model": "", "messages": []}', "model"),
    ("/v1/chat/completions",
     b'{"model": "m", "messages": [], "stream_options": {"include_usage": 1}}',
     "stream_options.include_usage"),
])
def test_parse_request_names_the_bad_field(path: str, body: bytes, param: str) -> None:
    with pytest.raises(RequestRejected) as caught:
        parse_request(path, body)
    assert caught.value.status == 400 and caught.value.param == param


# -- error shapes --------------------------------------------------------------------------------


def test_vllm_integer_code_becomes_a_string() -> None:
    body = (b'{"error": {"message": "too long", "type": "BadRequestError", "param": null, '
            b'"code": 400}}')
    error = orjson.loads(normalise_error_body(400, body))["error"]
    assert error == {"message": "too long", "type": "BadRequestError", "param": None,
                     "code": "400"}


def test_tei_flat_error_is_wrapped() -> None:
    error = orjson.loads(normalise_error_body(
        413, b'{"error": "batch too large", "error_type": "Validation"}'))["error"]
    assert error["message"] == "batch too large" and error["code"] == "validation"
    assert error["type"] == "invalid_request_error"


def test_conforming_error_bodies_pass_unchanged_and_text_is_wrapped() -> None:
    body = b'{"error":{"message":"m","type":"t","param":null,"code":"c"}}'
    assert normalise_error_body(400, body) is body
    wrapped = orjson.loads(normalise_error_body(502, b"<html>bad gateway</html>"))["error"]
    assert wrapped["message"] == "<html>bad gateway</html>" and wrapped["code"] is None


def test_retry_after_headers_round_up_to_whole_seconds() -> None:
    assert retry_after_headers(0.2) == {"retry-after": "1", "retry-after-ms": "200"}
    assert retry_after_headers(2.5) == {"retry-after": "3", "retry-after-ms": "2500"}


# -- SSE relay pieces ----------------------------------------------------------------------------


def _event(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def test_boundary_cuts_after_the_last_complete_event() -> None:
    assert _boundary(b"data: a\n\ndata: b\n\n") == 18
    assert _boundary(b"data: a\n\ndata: partial") == 9
    assert _boundary(b"data: partial") == 0
    assert _boundary(b"data: a\r\n\r\ndata: b") == 11


def test_transcript_knows_usage_done_id_and_text_per_choice() -> None:
    transcript = StreamTranscript()
    transcript.add(_event({"id": "s1", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
    transcript.add(_event({"id": "s1", "choices": [{"index": 0, "delta": {"content": "Hel"}},
                                                   {"index": 1, "delta": {"content": "Bon"}}]})
                   + _event({"id": "s1", "choices": [{"index": 0, "delta": {"content": "lo"}}],
                             "usage": None}))
    assert not transcript.ended_with_done()
    transcript.add(_event({"id": "s1", "choices": [], "usage": {"prompt_tokens": 2,
                                                                "completion_tokens": 3}})
                   + b"data: [DONE]\n\n")
    assert transcript.ended_with_done()
    assert transcript.usage() == {"prompt_tokens": 2, "completion_tokens": 3}
    assert transcript.stream_id() == "s1"
    assert transcript.text_by_choice() == {0: "Hello", 1: "Bon"}
    assert transcript.events == 5


def test_transcript_bounds_memory_but_keeps_the_tail() -> None:
    transcript = StreamTranscript(max_bytes=200)
    for i in range(50):
        transcript.add(_event({"choices": [{"index": 0, "text": f"t{i}"}]}))
    transcript.add(b"data: [DONE]\n\n")
    assert not transcript.complete and transcript.ended_with_done()


def test_stream_error_frame_is_one_openai_shaped_event() -> None:
    frame = stream_error_frame("broken", "stream_interrupted")
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    assert orjson.loads(frame[6:])["error"]["code"] == "stream_interrupted"


def test_usage_is_read_without_decoding_the_whole_body() -> None:
    body = orjson.dumps({"data": [{"embedding": [0.1] * 100}],
                         "usage": {"prompt_tokens": 7, "total_tokens": 7}})
    assert usage_of_body(body) == (7, 0)
    assert usage_of_body(b'{"usage": {"prompt_tokens": 1, "completion_tokens": 2}}') == (1, 2)
    assert usage_of_body(b'{"choices": []}') is None


# -- plans ---------------------------------------------------------------------------------------


def _worker(worker_id: str, model: str, pool: str | None = None, **fields: object) -> WorkerRecord:
    values: dict[str, object] = dict(
        worker_id=worker_id, instance_id=f"i-{worker_id}", model_id=model, engine="vllm",
        url=f"http://10.0.0.1:8000/{worker_id}/", agent_url="http://10.0.0.1:8080",
        registered_at=0.0, last_heartbeat=0.0, status="ready", pool=pool, probe_passed_at=0.0)
    values.update(fields)
    return WorkerRecord(**values)  # type: ignore[arg-type]


def _snapshot(workers: list[WorkerRecord], routes: dict | None = None,
              pools: dict | None = None) -> FleetSnapshot:
    by_model: dict[str, list[WorkerRecord]] = {}
    for w in workers:
        by_model.setdefault(w.model_id, []).append(w)
    return FleetSnapshot.build(
        by_model, {m: parse(Route, d) for m, d in (routes or {}).items()},
        {n: Pool(**d) for n, d in (pools or {}).items()}, taken_at=0.0, epoch="e")


def test_route_targets_in_order_with_pool_rewrite_and_upstream() -> None:
    snapshot = _snapshot(
        [_worker("a", "qwen", pool="gpu"), _worker("b", "qwen", pool="other"),
         _worker("c", "qwen"), _worker("d", "qwen", status="draining")],
        routes={"chat": {"targets": [{"pool": "gpu"}, {"upstream": "https://api.x.com/v1/",
                                                       "api_key_env": "X_KEY",
                                                       "model": "x-mini"}]}},
        pools={"gpu": {"model_id": "qwen"}})
    plan = build_plan(snapshot, "chat")
    assert plan is not None
    pool, upstream = plan.targets
    assert pool.label == "pool:gpu" and pool.model == "qwen"
    # its own worker and the hand-enrolled one; not another pool's, not a draining one
    assert [e.key for e in pool.endpoints] == ["a", "c"]
    assert pool.endpoints[0].base_url == "http://10.0.0.1:8000/a"
    assert upstream.label == "upstream:api.x.com" and upstream.model == "x-mini"
    assert upstream.endpoints[0].base_url == "https://api.x.com/v1"
    assert upstream.api_key_env == "X_KEY"


def test_unrouted_model_uses_its_pools_or_else_its_workers() -> None:
    snapshot = _snapshot([_worker("a", "m1")], pools={"p": {"model_id": "m2"}})
    assert build_plan(snapshot, "m1").targets[0].label == "model:m1"
    cold = build_plan(snapshot, "m2").targets[0]
    assert cold.label == "pool:p" and cold.endpoints == () and cold.model is None


def test_unknown_model_is_404_but_a_model_seen_before_waits() -> None:
    snapshot = _snapshot([])
    planner = Planner()
    with pytest.raises(RequestRejected) as caught:
        planner.plan(snapshot, "ghost", set())
    assert caught.value.status == 404 and caught.value.code == "model_not_found"
    plan = planner.plan(snapshot, "gone-for-now", {"gone-for-now"})
    assert plan.targets[0].endpoints == ()


# -- limits --------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _principal(rpm: int | None = None, tpm: int | None = None) -> Principal:
    return Principal(key_id="k1", name="n", models=None, rpm=rpm, tpm=tpm)


async def test_rpm_is_shared_through_the_store_counts() -> None:
    clock = Clock(6000.0)  # the start of a minute window
    store = MemoryFleetStore(clock=clock)
    a, b = RateLimiter(clock=clock), RateLimiter(clock=clock)
    principal = _principal(rpm=4)
    a.admit(principal)
    a.admit(principal)
    b.admit(principal)
    await a.sync(store)
    await b.sync(store)
    await a.sync(store)  # zero deltas still fetch the others' counts
    a.admit(principal)  # 3 + 1 = 4: the limit
    with pytest.raises(RequestRejected) as caught:
        a.admit(principal)
    assert caught.value.status == 429
    assert caught.value.headers["retry-after"] == "60"
    assert (await store.get_counts(window_key("k1", 100))) == {"requests": 3, "tokens": 0}


async def test_window_rolls_over_and_counts_survive_a_failed_sync() -> None:
    clock = Clock(6059.0)
    store = MemoryFleetStore(clock=clock)
    limiter = RateLimiter(clock=clock)
    principal = _principal(rpm=1)
    limiter.admit(principal)
    with pytest.raises(RequestRejected):
        limiter.admit(principal)
    clock.now = 6061.0
    limiter.admit(principal)  # a new minute
    await limiter.sync(store)
    assert await store.get_counts(window_key("k1", 101)) == {"requests": 1, "tokens": 0}


async def test_usage_is_counted_per_key_and_hour() -> None:
    clock = Clock(7200.0)
    store = MemoryFleetStore(clock=clock)
    limiter = RateLimiter(clock=clock)
    principal = _principal(tpm=100)
    limiter.admit(principal)
    limiter.record_usage(principal, 10, 20)
    limiter.record_usage(principal, 5, 5, estimated=True)
    await limiter.sync(store)
    usage = await store.get_counts("usage:k1:1970010102")
    assert usage == {"requests": 1, "prompt_tokens": 10, "completion_tokens": 20,
                     "estimated_tokens": 10}
    await limiter.sync(store)  # nothing new: nothing sent twice
    assert await store.get_counts("usage:k1:1970010102") == usage


# -- keys ----------------------------------------------------------------------------------------


async def _key_store() -> tuple[MemoryFleetStore, str]:
    store = MemoryFleetStore()
    await store.ensure_epoch("e")
    raw = new_api_key()
    record = ApiKeyRecord(id="key_1", name="n", key_hash=sha256_hex(raw),
                          prefix=display_prefix(raw), created_at=0.0, models=["m"], rpm=5)
    await store.put_doc(KEYS, record.key_hash, record)
    return store, raw


async def test_key_cache_serves_from_memory_within_its_ttl() -> None:
    store, raw = await _key_store()
    clock = Clock(0.0)
    cache = KeyCache(store, ttl_s=30, negative_ttl_s=5, negative_size=10, store_timeout_s=1,
                     clock=clock)
    principal = await cache.authenticate(f"Bearer {raw}".encode())
    assert principal.models == frozenset({"m"}) and principal.rpm == 5
    await cache.authenticate(f"Bearer {raw}".encode())
    assert cache.store_lookups == 1
    clock.now = 31.0
    await cache.authenticate(f"Bearer {raw}".encode())
    assert cache.store_lookups == 2


async def test_key_cache_keeps_stale_keys_while_the_store_is_down() -> None:
    store, raw = await _key_store()
    clock = Clock(0.0)
    up = {"ok": True}
    cache = KeyCache(store, ttl_s=1, negative_ttl_s=5, negative_size=10, store_timeout_s=1,
                     clock=clock, store_ok=lambda: up["ok"])
    await cache.authenticate(f"Bearer {raw}".encode())
    up["ok"] = False
    clock.now = 100.0
    assert (await cache.authenticate(f"Bearer {raw}".encode())).key_id == "key_1"
    assert cache.store_lookups == 1


async def test_key_cache_keeps_known_keys_when_the_store_lost_its_data() -> None:
    store, raw = await _key_store()
    cache = KeyCache(store, ttl_s=0, negative_ttl_s=5, negative_size=10, store_timeout_s=1)
    await cache.authenticate(f"Bearer {raw}".encode())
    store.flush()  # no epoch, no keys
    assert (await cache.authenticate(f"Bearer {raw}".encode())).key_id == "key_1"
    await store.ensure_epoch("e2")  # re-seeded without the key: now it is a revocation
    with pytest.raises(RouterError) as caught:
        await cache.authenticate(f"Bearer {raw}".encode())
    assert caught.value.status == 401


async def test_negative_cache_is_bounded_and_cleared_on_key_changes() -> None:
    store, _ = await _key_store()
    cache = KeyCache(store, ttl_s=30, negative_ttl_s=60, negative_size=2, store_timeout_s=1,
                     clock=time.monotonic)
    unknown = [new_api_key() for _ in range(3)]
    for raw in unknown:
        with pytest.raises(RouterError):
            await cache.authenticate(f"Bearer {raw}".encode())
    assert cache.store_lookups == 3
    with pytest.raises(RouterError):
        await cache.authenticate(f"Bearer {unknown[0]}".encode())  # evicted: asked again
    assert cache.store_lookups == 4
    cache.invalidate()
    with pytest.raises(RouterError):
        await cache.authenticate(f"Bearer {unknown[2]}".encode())
    assert cache.store_lookups == 5
