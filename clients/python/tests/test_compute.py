"""BatchCosine, Spread and GetStats against the real server."""

import threading

import numpy as np
import pytest

import engram_similarity as es
from engram_similarity import Cancellation, Client

TOLERANCE = 1e-5


def cosine64(queries: np.ndarray, targets: np.ndarray) -> np.ndarray:
    q = queries.astype(np.float64)
    t = targets.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return q @ t.T


def test_all_scores_match_numpy(client):
    rng = np.random.default_rng(7)
    queries = rng.standard_normal((4, 96), dtype=np.float32)
    targets = rng.standard_normal((300, 96), dtype=np.float32)
    result = client.batch_cosine(queries, targets)
    assert result.scores.shape == (4, 300) and result.scores.dtype == np.float32
    np.testing.assert_allclose(result.scores, cosine64(queries, targets), atol=TOLERANCE)
    assert result.top == []
    assert result.report.backend in ("cpu", "gpu", "mixed") and result.report.decided_by


def test_top_k_with_min_score(client):
    rng = np.random.default_rng(8)
    queries = rng.standard_normal((3, 16), dtype=np.float32)
    targets = rng.standard_normal((50, 16), dtype=np.float32)
    reference = cosine64(queries, targets)
    result = client.batch_cosine(queries, targets, top_k=5, min_score=0.1, placement="cpu")
    assert result.scores is None and len(result.top) == 3
    for q, top in enumerate(result.top):
        expected = np.argsort(-reference[q])[:5]
        expected = expected[reference[q][expected] >= 0.1]
        assert top.indices.tolist() == expected.tolist()
        np.testing.assert_allclose(top.scores, reference[q][expected], atol=TOLERANCE)


def test_inputs_of_other_layouts_are_accepted(client):
    rng = np.random.default_rng(9)
    targets = rng.standard_normal((20, 8))  # float64, converted
    query = targets[3]  # 1-D: one query
    result = client.batch_cosine(query, targets[:, :].T.T)
    np.testing.assert_allclose(result.scores, cosine64(query[None, :], targets), atol=TOLERANCE)
    assert result.scores[0, 3] == pytest.approx(1.0, abs=TOLERANCE)


def test_requests_and_responses_over_4_mib(client):
    rng = np.random.default_rng(10)
    # 12 MiB of targets in, 64 x 32768 scores (8 MiB) out.
    targets = rng.standard_normal((4096, 768), dtype=np.float32)
    result = client.batch_cosine(targets[:2], targets, top_k=1)
    assert [t.indices[0] for t in result.top] == [0, 1]
    small = rng.standard_normal((32768, 4), dtype=np.float32)
    result = client.batch_cosine(small[:64], small)
    assert result.scores.shape == (64, 32768)
    np.testing.assert_allclose(result.scores, cosine64(small[:64], small), atol=TOLERANCE)


def test_server_limits_are_resource_exhausted():
    from conftest import Server

    server = Server(["--max_message_bytes=1048576", "--max_output_elements=1000"])
    try:
        with Client(server.target) as client:
            with pytest.raises(es.ResourceExhausted):
                client.batch_cosine(np.ones((1, 512), np.float32), np.ones((1024, 512), np.float32))
            with pytest.raises(es.ResourceExhausted, match="top_k"):
                client.batch_cosine(np.ones((2, 4), np.float32), np.ones((600, 4), np.float32))
            client.upload_collection("rows", np.ones((600, 4), np.float32))
            with pytest.raises(es.ResourceExhausted, match="top_k"):
                client.search_collection("rows", np.ones((2, 4), np.float32), top_k=0)
            # Just under the limit goes through.
            result = client.batch_cosine(
                np.ones((1, 512), np.float32), np.ones((400, 512), np.float32), top_k=1
            )
            assert len(result.top) == 1
    finally:
        server.stop()


def test_invalid_arguments_name_the_field(client):
    good = np.ones((2, 4), np.float32)
    bad = good.copy()
    bad[1, 2] = np.nan
    with pytest.raises(es.InvalidArgument, match="queries") as error:
        client.batch_cosine(bad, good)
    assert error.value.code.name == "INVALID_ARGUMENT"
    with pytest.raises(es.InvalidArgument, match="targets"):
        client.batch_cosine(good, bad)
    with pytest.raises(es.InvalidArgument, match="cols|dimension"):
        client.batch_cosine(good, np.ones((2, 5), np.float32))
    with pytest.raises(es.InvalidArgument):
        client.batch_cosine(np.ones((0, 4), np.float32), good)


def test_deadline_exceeded(client):
    targets = np.ones((65536, 64), np.float32)
    with pytest.raises(es.DeadlineExceeded):
        client.batch_cosine(targets[:64], targets, timeout=0.001)


def test_cancellation_from_another_thread(client):
    targets = np.random.default_rng(11).standard_normal((65536, 256), dtype=np.float32)
    cancellation = Cancellation()
    timer = threading.Timer(0.02, cancellation.cancel)
    timer.start()
    with pytest.raises(es.Cancelled) as error:
        client.batch_cosine(targets[:256], targets, cancellation=cancellation)
    assert error.value.code.name == "CANCELLED"
    timer.join()
    # A call given an already-triggered cancellation never runs.
    with pytest.raises(es.Cancelled):
        client.get_stats(cancellation=cancellation)


def test_unavailable_without_a_server():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client(f"127.0.0.1:{port}", timeout=1) as client:
        with pytest.raises(es.Unavailable):
            client.get_stats()


def test_timeout_none_is_no_deadline(server):
    targets = np.ones((65536, 64), np.float32)
    with Client(server.target, timeout=0.001) as client:
        with pytest.raises(es.DeadlineExceeded):
            client.batch_cosine(targets[:64], targets, top_k=1)
        assert len(client.batch_cosine(targets[:64], targets, top_k=1, timeout=None).top) == 64


def test_unknown_call_keyword_is_a_type_error(client):
    with pytest.raises(TypeError, match="deadline"):
        client.get_stats(deadline=1)


def test_spread_inline_graph(client):
    # 0 -> 1 -> 2, 0 -> 2
    graph = (3, [0, 2, 3, 3], [1, 2, 2], [1.0, 0.5, 1.0])
    dense = client.spread({0: 1.0}, graph=graph, decay=("constant_factor", 0.5), max_hops=2)
    assert dense.activation.shape == (3,) and dense.activation[0] == pytest.approx(1.0)
    assert dense.hops >= 1 and dense.edges_traversed >= 2 and dense.graph_version == 0
    top = client.spread([(0, 1.0)], graph=graph, top_k=2, threshold=0.001)
    assert top.top_nodes.tolist()[0] == 0 and top.activation.size == 0
    filtered = client.spread(
        {0: 1.0, 1: 1.0}, graph=graph, seed_nodes=[1], result_nodes=np.array([2], np.uint32)
    )
    assert filtered.seeds_ignored == 1
    assert filtered.activation[0] == 0 and filtered.activation[1] == 0


def test_spread_errors(client):
    graph = (2, [0, 1, 1], [1], [1.0])
    with pytest.raises(es.InvalidArgument, match="graph"):
        client.spread({0: 1.0})  # neither graph nor graph_name
    with pytest.raises(es.InvalidArgument, match="min_version"):
        client.spread({0: 1.0}, graph=graph, min_version=3)
    with pytest.raises(es.NotFound, match="graph_name"):
        client.spread({0: 1.0}, graph_name="no-such-graph")
    with pytest.raises(es.InvalidArgument, match="weights"):
        client.spread({0: 1.0}, graph=(2, [0, 1, 1], [1], [-1.0]))


def test_get_stats_counts_calls(client):
    client.batch_cosine(np.ones((1, 2), np.float32), np.ones((1, 2), np.float32))
    stats = client.get_stats()
    assert stats.version and stats.serving and stats.phase == "serving"
    assert stats.requests[("BatchCosine", "OK")] >= 1
    assert stats.raw.uptime_seconds == stats.uptime_seconds


def test_service_config_and_metadata(server):
    config = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": "engram.similarity.v1.Similarity"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
    with Client(f"ipv4:{server.target}", service_config=config) as client:
        result = client.batch_cosine(
            np.ones((1, 3), np.float32),
            np.eye(3, dtype=np.float32),
            metadata=[("x-request-id", "python-client-test")],
            timeout=5,
        )
        assert result.scores.shape == (1, 3)
