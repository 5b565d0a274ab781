"""The TEI kind: embeddings through the openai SDK and TEI's own routes, TEI's flat errors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from simulator.embeddings import Embedder
from tests.simulator.conftest import INSTANT, Sim
from tests.simulator.rawhttp import close, request_bytes

DIMS = 16


@pytest.fixture(scope="module")
def sim(shared_sim) -> Sim:
    return shared_sim("--kind", "tei", *INSTANT, "--dims", str(DIMS), "--model", "sim-embed",
                      "--max-client-batch-size", "4")


def test_sdk_embeddings_default_base64_decode_to_unit_vectors(sim: Sim) -> None:
    # The SDK asks for base64 when no encoding_format is given, and decodes it itself.
    response = sim.client().embeddings.create(model="sim-embed", input=["a river", "a lake"])
    assert response.model == "sim-embed"
    assert [item.index for item in response.data] == [0, 1]
    vectors = [np.array(item.embedding) for item in response.data]
    assert all(v.shape == (DIMS,) for v in vectors)
    assert all(np.isclose(np.linalg.norm(v), 1.0, atol=1e-5) for v in vectors)
    assert not np.allclose(vectors[0], vectors[1])
    assert response.usage.prompt_tokens == response.usage.total_tokens == 4


async def test_float_and_base64_give_the_same_deterministic_vector(sim: Sim) -> None:
    client = sim.async_client()
    as_float = await client.embeddings.create(model="sim-embed", input="same text",
                                              encoding_format="float")
    as_base64 = await client.embeddings.create(model="sim-embed", input="same text")
    assert np.allclose(as_float.data[0].embedding, as_base64.data[0].embedding)
    again = await client.embeddings.create(model="sim-embed", input="same text",
                                           encoding_format="float")
    assert again.data[0].embedding == as_float.data[0].embedding
    await client.close()


def test_embed_route_returns_a_list_of_vectors_and_honours_normalize(sim: Sim) -> None:
    vectors = sim.post("/embed", {"inputs": "hello"}).json()
    assert len(vectors) == 1 and len(vectors[0]) == DIMS
    raw = sim.post("/embed", {"inputs": ["hello"], "normalize": False}).json()
    assert np.allclose(np.array(raw[0]) / np.linalg.norm(raw[0]), vectors[0], atol=1e-5)


def test_vectors_depend_on_the_seed() -> None:
    assert not np.allclose(Embedder(1, 8).vector("x"), Embedder(2, 8).vector("x"))
    assert np.array_equal(Embedder(1, 8).vector("x"), Embedder(1, 8).vector("x"))


def test_info_describes_the_model_like_tei(sim: Sim) -> None:
    info = sim.get("/info").json()
    assert info["model_id"] == "sim-embed"
    assert info["max_concurrent_requests"] == 512
    assert info["max_client_batch_size"] == 4


def test_embed_errors_are_flat_tei_bodies(sim: Sim) -> None:
    empty = sim.post("/embed", {"inputs": []})
    assert empty.status_code == 413
    assert empty.json() == {"error": "`inputs` cannot be empty", "error_type": "Validation"}
    too_many = sim.post("/embed", {"inputs": ["a"] * 5})
    assert too_many.status_code == 413
    assert too_many.json()["error"] == "batch size 5 > maximum allowed batch size 4"
    malformed = sim.post("/embed", content=b"{", headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error_type"] == "Validation"
    assert sim.post("/embed", {"text": "x"}).status_code == 422


def test_openai_route_errors_are_flat_with_message_code_type(sim: Sim) -> None:
    response = sim.post("/v1/embeddings", {"model": "sim-embed", "input": []})
    assert response.status_code == 413
    assert response.json() == {"message": "`inputs` cannot be empty", "code": 413,
                               "type": "Validation"}


def test_tei_metrics_have_tei_names(sim: Sim) -> None:
    sim.post("/embed", {"inputs": "count me"})
    text = sim.get("/metrics").text
    assert 'te_request_count{method="single"}' in text
    assert 'te_request_success{method="single"}' in text
    assert "te_queue_size 0.0" in text
    assert "te_batch_current_size" in text
    assert "te_request_duration_bucket" in text


async def test_beyond_max_concurrent_requests_tei_answers_429(start_sim) -> None:
    sim = await start_sim("--kind", "tei", *INSTANT, "--max-concurrent-requests", "1",
                          "--hang-rate", "1.0")
    _, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(request_bytes("POST", "/embed", {"inputs": "hold the only permit"}))
    await sim.wait_stats(hanging=1)
    refused = sim.post("/embed", {"inputs": "one too many"})
    assert refused.status_code == 429
    assert refused.json() == {"error": "Model is overloaded", "error_type": "Overloaded"}
    await close(writer)
    await sim.wait_stats(hanging=0, cancelled=1)
    assert 'te_request_failure{err="overloaded"} 1.0' in sim.get("/metrics").text


async def test_tei_loading_and_injected_errors(start_sim) -> None:
    sim = await start_sim("--kind", "tei", *INSTANT, "--error-rate", "1.0")
    failed = sim.post("/v1/embeddings", {"input": "x"})
    assert failed.status_code == 500 and failed.json()["type"] == "Backend"
    loading = await start_sim("--kind", "tei", "--load-s", "30", ready="/metrics")
    unhealthy = loading.get("/health")
    assert unhealthy.status_code == 503
    assert unhealthy.json() == {"error": "unhealthy", "error_type": "Unhealthy"}
    assert loading.post("/embed", {"inputs": "x"}).status_code == 503
