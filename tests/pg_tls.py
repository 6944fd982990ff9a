"""A private PostgreSQL that accepts only TLS (`hostssl` + scram-sha-256; role `certuser` by
client certificate instead), its certificates made here: a self-signed CA, a server certificate
it signs for `localhost` (only: connecting to 127.0.0.1 is a host-name mismatch), a client
certificate for `certuser`, and a second CA that signed nothing."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from conftest import _free_port


@dataclass(frozen=True)
class TlsServer:
    """The running server and the files a client needs."""

    port: int
    password: str
    ca: Path
    wrong_ca: Path
    client_cert: Path
    client_key: Path
    database: str = "postgres"
    user: str = "postgres"

    def dsn(self, host: str = "127.0.0.1", database: str | None = None, password: bool = True, **params: str) -> str:
        """`postgresql://user[:password]@host:port/db[?params]`."""
        auth = self.user + (":" + quote(self.password, safe="") if password else "")
        query = "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in params.items())
        return f"postgresql://{auth}@{host}:{self.port}/{database or self.database}" + (f"?{query}" if query else "")


def _write_ca(directory: Path, name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name.replace(' ', '-')}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def _write_leaf(directory: Path, name: str, ca_key, ca_cert, server: bool) -> tuple[Path, Path]:
    """A certificate for `name` signed by the CA: a server's (SAN = DNS name) or a client's
    (CN = the role)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    kind = "server" if server else "client"
    crt, pem_key = directory / f"{kind}.crt", directory / f"{kind}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    pem_key.chmod(0o600)
    return crt, pem_key


@contextmanager
def tls_only_postgres(bindir: Path, password: str) -> Iterator[TlsServer]:
    """Starts the cluster on a free loopback port; stops and deletes it on exit."""
    # pytest's tmp tree is root-only (mode 700): the cluster lives where `postgres` can reach.
    root = Path(tempfile.mkdtemp(prefix="taxifare-pgtls-"))
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    certs = root / "certs"
    certs.mkdir()
    ca_key, ca_cert, ca = _write_ca(certs, "taxifare test CA")
    _, _, wrong_ca = _write_ca(certs, "some other CA")
    crt, key = _write_leaf(certs, "localhost", ca_key, ca_cert, server=True)
    client_crt, client_key = _write_leaf(certs, "certuser", ca_key, ca_cert, server=False)
    (root / "pw").write_text(password)
    if run_as:
        for p in (root, *root.rglob("*")):
            shutil.chown(p, "postgres")
    # Clients (this process) read the CA files; the key stays the server's.
    root.chmod(0o755)
    certs.chmod(0o755)
    data, port = root / "data", _free_port()
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "scram-sha-256",
                    f"--pwfile={root / 'pw'}"], check=True, capture_output=True)
    # TLS only: no `host` line, and no `local` line either (every client goes through hostssl).
    (data / "pg_hba.conf").write_text("hostssl all certuser 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(f"ssl = on\nssl_cert_file = '{crt}'\nssl_key_file = '{key}'\nssl_ca_file = '{ca}'\n")
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                    "-l", str(root / "log"), "-w", "start"], check=True, capture_output=True)
    try:
        yield TlsServer(port=port, password=password, ca=ca, wrong_ca=wrong_ca, client_cert=client_crt, client_key=client_key)
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
