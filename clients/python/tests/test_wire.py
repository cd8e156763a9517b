"""The hand-written encoding against protobuf's own, byte for byte."""

import numpy as np
import pytest

from engram_similarity import pb, requests, responses, wire


def reference_matrix(array: np.ndarray) -> pb.Matrix:
    rows, cols = array.shape
    return pb.Matrix(rows=rows, cols=cols, values=array.ravel().tolist())


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (2, 200), (1, 1365 * 768 // 1365)])
def test_batch_cosine_request_parses_to_the_same_message(shape):
    rng = np.random.default_rng(1)
    queries = rng.standard_normal(shape, dtype=np.float32)
    targets = rng.standard_normal((7, shape[1]), dtype=np.float32)
    data = requests.batch_cosine(queries, targets, top_k=3, min_score=0.25, placement_="cpu")
    expected = pb.BatchCosineRequest(
        queries=reference_matrix(queries),
        targets=reference_matrix(targets),
        top_k=3,
        min_score=0.25,
        placement=pb.PLACEMENT_CPU_ONLY,
    )
    assert pb.BatchCosineRequest.FromString(data) == expected
    # Field order matches protobuf's too, so the bytes are identical.
    assert data == expected.SerializeToString()


def test_matrix_input_is_converted_only_when_needed():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert wire.as_matrix(array, "x") is array
    assert wire.as_matrix(array.astype(np.float64), "x").dtype == np.float32
    transposed = wire.as_matrix(array.T, "x")
    assert transposed.flags.c_contiguous and np.array_equal(transposed, array.T)
    assert wire.as_matrix(array.astype(">f4"), "x").dtype == np.dtype("<f4")
    assert wire.as_matrix([1.0, 2.0], "x").shape == (1, 2)
    with pytest.raises(ValueError, match="x must be"):
        wire.as_matrix(np.zeros((2, 2, 2)), "x")


def test_upsert_and_search_requests_match_protobuf():
    vectors = np.ones((2, 3), dtype=np.float32)
    data = requests.upsert_rows(
        "c",
        vectors,
        [5, 6],
        labels=[{"tags": {"k": "v"}}, {"attributes": {"t": 1.0}}],
        idempotency_key="key",
        expected_version=4,
    )
    message = pb.UpsertRowsRequest.FromString(data)
    assert message.collection == "c" and list(message.ids) == [5, 6]
    assert message.vectors == reference_matrix(vectors)
    assert message.labels[0].tags[0].text == "v" and message.labels[1].attributes["t"] == 1.0
    assert message.expected_version == 4 and message.idempotency_key == "key"
    search = pb.SearchCollectionRequest.FromString(
        requests.search_collection("c", vectors, top_k=0, min_version=3)
    )
    assert search.queries == reference_matrix(vectors) and search.min_version == 3


def test_upload_chunks_carry_every_row_once():
    vectors = np.arange(10 * 4, dtype=np.float32).reshape(10, 4)
    seen = []
    total, messages = requests.upload_collection(
        "c",
        vectors,
        create=True,
        ids=np.arange(10),
        chunk_rows=3,
        progress=lambda sent, total: seen.append((sent, total)),
    )
    parsed = [pb.UploadCollectionRequest.FromString(m) for m in messages]
    assert total == 10 and parsed[0].header.total_rows == 10 and parsed[0].header.with_ids
    values = np.concatenate([np.array(p.chunk.vectors, dtype=np.float32) for p in parsed[1:]])
    assert np.array_equal(values, vectors.ravel())
    assert [i for p in parsed[1:] for i in p.chunk.ids] == list(range(10))
    assert seen == [(3, 10), (6, 10), (9, 10), (10, 10)]


def test_put_graph_chunks_match_the_arrays():
    offsets, targets, weights = [0, 2, 3, 3], [1, 2, 0], [0.5, 0.25, 1.0]
    parsed = [
        pb.PutGraphRequest.FromString(m)
        for m in requests.put_graph("g", 3, offsets, targets, weights, chunk_entries=2)
    ]
    assert parsed[0].header.num_edges == 3
    chunks = [p.chunk for p in parsed[1:]]
    assert [o for c in chunks for o in c.row_offsets] == offsets
    assert [t for c in chunks for t in c.targets] == targets
    assert [w for c in chunks for w in c.weights] == weights


def test_response_scores_are_sliced_without_protobuf():
    scores = np.arange(6, dtype=np.float32)
    message = pb.BatchCosineResponse(scores=scores.tolist())
    message.report.decided_by = "rule"
    result = responses.batch_cosine(message.SerializeToString(), 2)
    assert np.array_equal(result.scores, scores.reshape(2, 3))
    assert result.report.decided_by == "rule"


def test_unpacked_scores_fall_back_to_protobuf():
    # Two floats as unpacked fixed32 entries (wire type 5), legal protobuf.
    data = b"".join(wire.tag(1, wire.WIRE_I32) + np.float32(v).tobytes() for v in (1.5, 2.5))
    result = responses.batch_cosine(data, 1)
    assert result.scores.tolist() == [[1.5, 2.5]]


def test_split_packed_concatenates_runs():
    a, b = np.float32([1, 2]), np.float32([3])
    data = wire.join(wire.packed_parts(1, a) + wire.packed_parts(1, b))
    arrays, rest = wire.split_packed(data, {1: np.dtype("<f4")})
    assert arrays[1].tolist() == [1, 2, 3] and rest == b""
