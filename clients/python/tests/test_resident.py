"""Resident collections and graphs: every RPC, versions and error codes."""

import numpy as np
import pytest

import engram_similarity as es
from engram_similarity import filters

from test_compute import TOLERANCE, cosine64


def test_create_describe_list_delete(client, name):
    info = client.create_collection(name, 8, metadata={"owner": "tests"})
    assert (info.name, info.dimension, info.count, info.version) == (name, 8, 0, 1)
    assert info.metadata == {"owner": "tests"} and info.load_state == "ready"
    assert client.describe_collection(name).dimension == 8
    assert name in [c.name for c in client.list_collections()]
    with pytest.raises(es.AlreadyExists):
        client.create_collection(name, 8)
    assert client.delete_collection(name) is None
    with pytest.raises(es.NotFound):
        client.describe_collection(name)
    with pytest.raises(es.NotFound):
        client.delete_collection(name)


def test_create_rejects_bad_input(client):
    with pytest.raises(es.InvalidArgument):
        client.create_collection(".hidden", 8)
    with pytest.raises(es.InvalidArgument):
        client.create_collection("zero-dim", 0)


def test_upload_search_and_replay(client, name):
    rng = np.random.default_rng(20)
    vectors = rng.standard_normal((1000, 32), dtype=np.float32)
    ids = np.arange(1000, dtype=np.uint64) * 10
    progress = []
    uploaded = client.upload_collection(
        name,
        vectors,
        ids=ids,
        chunk_bytes=16 << 10,
        idempotency_key="first",
        metadata={"k": "v"},
        progress=lambda sent, total: progress.append((sent, total)),
    )
    assert uploaded.rows_uploaded == 1000 and not uploaded.replayed
    assert uploaded.collection.count == 1000 and uploaded.collection.has_ids
    assert len(progress) > 5 and progress[-1] == (1000, 1000)
    again = client.upload_collection(name, vectors, create=True, ids=ids, idempotency_key="first")
    assert again.replayed and again.collection.version == uploaded.collection.version

    queries = vectors[:3] + 0.01
    result = client.search_collection(name, queries, top_k=4)
    reference = cosine64(queries, vectors)
    assert result.collection_version == uploaded.collection.version
    assert result.rows_searched == 1000
    for q, hits in enumerate(result.hits):
        order = np.argsort(-reference[q])[:4]
        assert hits.ids.tolist() == (order * 10).tolist() and hits.rows.tolist() == order.tolist()
        np.testing.assert_allclose(hits.scores, reference[q][order], atol=TOLERANCE)

    everything = client.search_collection(name, queries, top_k=0)
    assert everything.scores.shape == (3, 1000) and everything.hits == []
    np.testing.assert_allclose(everything.scores, reference, atol=TOLERANCE)
    assert everything.ids.tolist() == ids.tolist()


def test_cancelled_upload_commits_nothing(client, name):
    vectors = np.ones((4096, 64), np.float32)
    cancellation = es.Cancellation()

    def progress(sent, total):
        if sent >= 1024:
            cancellation.cancel()

    with pytest.raises(es.Cancelled):
        client.upload_collection(
            name, vectors, chunk_rows=256, progress=progress, cancellation=cancellation
        )
    with pytest.raises(es.NotFound):
        client.describe_collection(name)
    with pytest.raises(es.InvalidArgument, match="idempotency_key"):
        client.upload_collection(name, vectors[:2], idempotency_key="\x01")


def test_append_from_a_memory_mapped_npy(client, name, tmp_path):
    rng = np.random.default_rng(21)
    first = rng.standard_normal((100, 16), dtype=np.float32)
    more = rng.standard_normal((300, 16), dtype=np.float32)
    path = tmp_path / "more.npy"
    np.save(path, more)
    client.upload_collection(name, first)
    with pytest.raises(es.AlreadyExists):
        client.upload_collection(name, first)
    appended = client.upload_collection(name, path, create=False, chunk_rows=64)
    assert appended.collection.count == 400 and appended.collection.version == 2
    hit = client.search_collection(name, more[7], top_k=1).hits[0]
    assert hit.ids.tolist() == [107]  # row indices when no ids were uploaded
    with pytest.raises(es.NotFound):
        client.upload_collection(name + "-absent", path, create=False)
    with pytest.raises(es.InvalidArgument, match="dimension"):
        client.upload_collection(name, np.ones((2, 8), np.float32), create=False)


def test_filters_and_labels(client, name):
    vectors = np.eye(6, 6, dtype=np.float32) + 0.1
    labels = [
        {"tags": {"kind": "episode", "user": 1}, "attributes": {"ts": 10}},
        {"tags": {"kind": "episode", "user": 2}, "attributes": {"ts": 20}},
        {"tags": {"kind": "fact"}, "attributes": {"ts": 30}},
        filters.labels(tags={"kind": ["fact", "episode"]}, attributes={"ts": 40}),
        {"tags": {"kind": "note"}},
        {},
    ]
    client.upload_collection(name, vectors, ids=np.arange(6) + 1, labels=labels)
    query = np.ones(6, np.float32)

    def ids(**kwargs):
        result = client.search_collection(name, query, top_k=10, **kwargs)
        return sorted(result.hits[0].ids.tolist())

    assert ids(where=filters.tag("kind", "episode")) == [1, 2, 4]
    assert ids(where=filters.tag("user", 2)) == [2]
    assert ids(where=filters.attribute("ts", min=20, max=40, max_exclusive=True)) == [2, 3]
    assert ids(
        where=filters.all_of(filters.tag("kind", "fact"), filters.attribute("ts", min=35))
    ) == [4]
    assert ids(where=filters.any_of(filters.tag("kind", "note"), filters.tag("user"))) == [1, 2, 5]
    assert ids(where=filters.not_(filters.tag("kind"))) == [6]
    assert ids(allow_ids=[1, 2, 3], deny_ids=[2]) == [1, 3]
    filtered = client.search_collection(name, query, top_k=0, where=filters.tag("kind", "fact"))
    assert filtered.rows_searched == 2 and sorted(filtered.ids.tolist()) == [3, 4]
    with pytest.raises(es.InvalidArgument, match="labels"):
        client.upload_collection(
            name + "-bad", vectors[:1], labels=[{"tags": {"x" * 65: "too long a name"}}]
        )


def test_search_errors(client, name):
    client.upload_collection(name, np.ones((4, 8), np.float32))
    with pytest.raises(es.NotFound, match="collection"):
        client.search_collection(name + "-absent", np.ones(8, np.float32))
    with pytest.raises(es.InvalidArgument, match="queries.cols"):
        client.search_collection(name, np.ones(4, np.float32))
    with pytest.raises(es.Unavailable) as error:
        client.search_collection(name, np.ones(8, np.float32), min_version=99)
    assert error.value.retry_pushback_ms is not None
    with pytest.raises(es.Unavailable):
        client.describe_collection(name, min_version=99)
    assert client.describe_collection(name, min_version=1).version == 1


def test_upsert_and_delete_rows_with_versions(client, name):
    rng = np.random.default_rng(22)
    vectors = rng.standard_normal((10, 8), dtype=np.float32)
    version = client.upload_collection(name, vectors, ids=np.arange(10)).collection.version
    upserted = client.upsert_rows(
        name,
        vectors[:2] * -1,
        [0, 100],
        labels=[{"tags": {"a": "b"}}, {}],
        idempotency_key="u1",
        expected_version=version,
    )
    assert (upserted.inserted, upserted.replaced, upserted.replayed) == (1, 1, False)
    assert upserted.collection.version == version + 1 and upserted.collection.count == 11
    assert client.upsert_rows(name, vectors[:2] * -1, [0, 100], idempotency_key="u1").replayed
    with pytest.raises(es.Aborted):
        client.upsert_rows(name, vectors[:1], [5], expected_version=version)
    deleted = client.delete_rows(name, [1, 2, 12345], expected_version=version + 1)
    assert (deleted.deleted, deleted.not_found) == (2, 1)
    assert deleted.not_found_ids.tolist() == [12345]
    with pytest.raises(es.Aborted):
        client.delete_rows(name, [3], expected_version=version)
    assert client.delete_rows(name, [3], idempotency_key="d1").deleted == 1
    assert client.delete_rows(name, [3], idempotency_key="d1").replayed
    with pytest.raises(es.InvalidArgument, match="vectors"):
        client.upsert_rows(name, np.ones((1, 3), np.float32), [7])


def test_upsert_needs_uploaded_ids(client, name):
    client.upload_collection(name, np.ones((2, 4), np.float32))  # no ids
    with pytest.raises(es.FailedPrecondition):
        client.upsert_rows(name, np.ones((1, 4), np.float32), [9])


def test_graph_lifecycle(client, name, tmp_path):
    # A ring of 50 nodes plus chords, streamed in chunks of 16 entries.
    nodes = 50
    targets = np.concatenate([(np.arange(nodes) + 1) % nodes, (np.arange(nodes) + 7) % nodes])
    sources = np.concatenate([np.arange(nodes), np.arange(nodes)])
    order = np.argsort(sources, kind="stable")
    targets = targets[order].astype(np.uint32)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(sources, minlength=nodes))]).astype(
        np.uint32
    )
    weights = np.full(targets.size, 0.5, np.float32)
    np.save(tmp_path / "weights.npy", weights)
    progress = []
    info = client.put_graph(
        name,
        nodes,
        offsets,
        targets,
        tmp_path / "weights.npy",
        chunk_entries=16,
        progress=lambda sent, total: progress.append(sent),
    )
    assert (info.num_nodes, info.num_edges) == (nodes, 100) and info.version >= 1
    assert progress[-1] == offsets.size + targets.size
    assert name in [g.name for g in client.list_graphs()]
    assert client.describe_graph(name, min_version=info.version).version == info.version
    with pytest.raises(es.AlreadyExists):
        client.put_graph(name, nodes, offsets, targets, weights)

    spread = client.spread({0: 1.0}, graph_name=name, top_k=3, min_version=info.version)
    assert spread.graph_version == info.version and spread.top_nodes[0] == 0

    updated = client.update_graph(
        name,
        add_nodes=1,
        add_edges=[(0, nodes, 1.0)],
        set_weights=[(0, 1, 0.9)],
        remove_edges=[(1, 2), (3, 40)],
        expected_version=info.version,
        idempotency_key="g1",
    )
    assert updated.graph.num_nodes == nodes + 1 and updated.graph.version > info.version
    assert (updated.edges_added, updated.edges_reweighted, updated.edges_removed) == (1, 1, 1)
    assert updated.not_found == 1 and updated.not_found_edges.tolist() == [[3, 40]]
    assert client.update_graph(name, add_nodes=1, idempotency_key="g1").replayed
    with pytest.raises(es.Aborted):
        client.update_graph(name, add_nodes=1, expected_version=info.version)
    with pytest.raises(es.InvalidArgument, match="add_edges"):
        client.update_graph(name, add_edges=[(0, 10_000, 1.0)])
    with pytest.raises(es.Unavailable):
        client.describe_graph(name, min_version=updated.graph.version + 100)

    client.delete_graph(name)
    with pytest.raises(es.NotFound):
        client.describe_graph(name)
    with pytest.raises(es.NotFound):
        client.delete_graph(name)


def test_put_graph_rejects_bad_csr(client, name):
    with pytest.raises(es.InvalidArgument, match="targets"):
        client.put_graph(name, 2, [0, 1, 1], [5], [1.0])
    with pytest.raises(ValueError, match="weights"):
        client.put_graph(name, 2, [0, 1, 1], [1], [1.0, 2.0])
