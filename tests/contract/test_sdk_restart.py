"""What the cloud's SDK started survives a SIGKILL of the server: a batch run resumes and every
row is answered once; a deferred completion runs again; and the gRPC port serves TLS."""

from __future__ import annotations

import datetime
import ipaddress
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fovea.modelgen.demo import DemoModelFiles
from tests.contract.grpc_node import new_node
from tests.contract.test_sdk_batches import POLL_S, image_row, upload, write_rows
from tests.processes import wait_for

pytestmark = pytest.mark.slow


def test_a_grpc_started_batch_survives_sigkill(tmp_path: Path, demo_model: DemoModelFiles) -> None:
    node = new_node(tmp_path / "home", demo_model)
    node.start()
    try:
        rows = [image_row(f"Describe picture {n} in detail.", (n * 30, 90, 200)) for n in range(8)]
        dataset = upload(node, write_rows(tmp_path / "rows.jsonl", rows))
        model = (
            node.sdk().models.completions("gemma-3-demo").configure(temperature=0, max_tokens=20)
        )
        task_id = model.batch.run_deferred(dataset).id

        def some_done() -> dict[str, int] | None:
            counts = httpx.get(f"{node.http}/v1/batches/{task_id}", headers=node.headers())
            done = counts.json()["request_counts"]
            return done if 0 < done["completed"] < done["total"] else None

        before = wait_for(some_done, "a few rows answered, not all")
        node.stop(kill=True)
        node.start()
        result = node.sdk().batch.get(task_id).wait(poll_interval=POLL_S)
        records = list(result.read())
        assert [json.loads(r["request"]) for r in records] == [row["request"] for row in rows]
        assert all(r["response"] for r in records)
        batch = httpx.get(f"{node.http}/v1/batches/{task_id}", headers=node.headers()).json()
        assert batch["request_counts"] == {"total": 8, "completed": 8, "failed": 0}
        assert before["completed"] < 8
    finally:
        node.stop()


def test_a_deferred_completion_runs_again_after_sigkill(
    tmp_path: Path, demo_model: DemoModelFiles
) -> None:
    node = new_node(tmp_path / "home", demo_model)
    node.start()
    try:
        model = (
            node.sdk().models.completions("gemma-3-demo").configure(temperature=0, max_tokens=256)
        )
        prompt = "Write a very long poem about the sea."
        operation = model.run_deferred(prompt)
        node.stop(kill=True)
        with sqlite3.connect(node.home / "fovea.db") as database:
            [(done,)] = database.execute(
                "SELECT done FROM operations WHERE id = ?", (operation.id,)
            ).fetchall()
        assert not done  # killed mid-generation: only a restart can finish it
        node.start()
        result = operation.wait(poll_interval=POLL_S)
        assert result.alternatives[0].text == model.run(prompt).alternatives[0].text
    finally:
        node.stop()


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fovea-test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_the_grpc_port_serves_tls(tmp_path: Path, demo_model: DemoModelFiles) -> None:
    cert, key = self_signed(tmp_path)
    env = {"FOVEA_GRPC_TLS_CERT": str(cert), "FOVEA_GRPC_TLS_KEY": str(key)}
    node = new_node(tmp_path / "home", demo_model, env)
    node.ca = cert
    node.start()
    try:
        model = node.sdk().models.completions("gemma-3-demo").configure(max_tokens=4)
        assert model.run("Hi").usage.completion_tokens > 0
        assert [d.id for d in node.sdk().datasets.list()] == []
    finally:
        node.stop()
