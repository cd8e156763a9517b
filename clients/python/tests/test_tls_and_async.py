"""TLS (server-only and mutual) with throwaway certificates, and AsyncClient."""

import asyncio
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import engram_similarity as es
from engram_similarity import AsyncClient, Client, TlsConfig

from conftest import Server
from test_compute import TOLERANCE, cosine64


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A CA, a server certificate for localhost / 127.0.0.1 and a client one."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificates")
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    openssl(
        d,
        "req",
        "-x509",
        "-nodes",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=engram-test-ca",
    )
    (d / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject in (("server", "/CN=localhost"), ("client", "/CN=engram-test-client")):
        openssl(
            d,
            "req",
            "-nodes",
            *ec,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            subject,
        )
        openssl(
            d,
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "1",
            "-extfile",
            f"{name}.ext",
        )
    return d


def test_tls_server_certificate(certificates):
    tls = TlsConfig(root_certificates=str(certificates / "ca.pem"), server_name="localhost")
    server = Server(
        [
            f"--tls_cert_file={certificates / 'server.pem'}",
            f"--tls_key_file={certificates / 'server.key'}",
        ],
        tls=tls,
    )
    try:
        with Client(server.target, tls=tls) as client:
            assert client.health() == "SERVING"
            result = client.batch_cosine(np.ones((1, 4), np.float32), np.eye(4, dtype=np.float32))
            np.testing.assert_allclose(result.scores, [[0.5] * 4], atol=TOLERANCE)
        with Client(server.target, timeout=1) as plaintext:
            with pytest.raises(es.Unavailable):
                plaintext.get_stats()
    finally:
        server.stop()


def test_mutual_tls(certificates):
    c = certificates
    server_tls = TlsConfig(
        root_certificates=(c / "ca.pem").read_bytes(),
        certificate_chain=(c / "client.pem").read_bytes(),
        private_key=(c / "client.key").read_bytes(),
    )
    server = Server(
        [
            f"--tls_cert_file={c / 'server.pem'}",
            f"--tls_key_file={c / 'server.key'}",
            f"--tls_client_ca_file={c / 'ca.pem'}",
        ],
        tls=server_tls,
    )
    try:
        with Client(server.target, tls=server_tls) as client:
            assert client.get_stats().serving
        without = TlsConfig(root_certificates=str(c / "ca.pem"))
        with Client(server.target, tls=without, timeout=1) as client:
            with pytest.raises(es.Unavailable):
                client.get_stats()
    finally:
        server.stop()


def test_async_client(server, name):
    rng = np.random.default_rng(30)
    queries = rng.standard_normal((2, 24), dtype=np.float32)
    targets = rng.standard_normal((40, 24), dtype=np.float32)

    async def main():
        async with AsyncClient(server.target) as client:
            assert await client.health() == "SERVING"
            # Several calls in flight on one channel.
            results = await asyncio.gather(
                *(client.batch_cosine(queries, targets) for _ in range(4))
            )
            for result in results:
                np.testing.assert_allclose(
                    result.scores, cosine64(queries, targets), atol=TOLERANCE
                )
            uploaded = await client.upload_collection(
                name, targets, ids=np.arange(40), chunk_rows=7
            )
            assert uploaded.collection.count == 40
            hits = (await client.search_collection(name, targets[5], top_k=1)).hits[0]
            assert hits.ids.tolist() == [5]
            upserted = await client.upsert_rows(name, targets[:1], [99])
            with pytest.raises(es.Aborted):
                await client.delete_rows(name, [99], expected_version=1)
            assert (await client.delete_rows(name, [99])).deleted == 1
            assert upserted.collection.version == 2
            assert name in [c.name for c in await client.list_collections()]
            assert (await client.describe_collection(name)).count == 40
            info = await client.put_graph(name, 2, [0, 1, 1], [1], [1.0])
            spread = await client.spread({0: 1.0}, graph_name=name)
            assert spread.graph_version == info.version
            assert (await client.update_graph(name, add_nodes=1)).graph.num_nodes == 3
            assert [g.name for g in await client.list_graphs()] == [name]
            assert (await client.describe_graph(name)).num_nodes == 3
            await client.delete_graph(name)
            await client.delete_collection(name)
            assert (await client.create_collection(name, 4)).dimension == 4
            assert (await client.get_stats()).serving
            with pytest.raises(es.NotFound):
                await client.describe_graph(name)
            with pytest.raises(es.InvalidArgument, match="queries"):
                await client.batch_cosine(np.full((1, 24), np.nan, np.float32), targets)
            big = rng.standard_normal((65536, 128), dtype=np.float32)
            with pytest.raises(es.DeadlineExceeded):
                await client.batch_cosine(big[:64], big, timeout=0.001)
            task = asyncio.ensure_future(client.batch_cosine(big[:256], big))
            await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The channel is still usable after a cancelled call.
            assert (await client.batch_cosine(queries, targets, top_k=1)).top

    asyncio.run(main())
