"""TLS to the tracking database: the real MLflow writes a training run through a TLS-only
PostgreSQL (hostssl + scram-sha-256, its CA made here), and the Rust reader gets the watermark
with each sslmode as libpq means it — or one clear line saying why not."""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest

from conftest import TLS_PASSWORD as PASSWORD
from helpers import taxifare
from pg_tls import TlsServer
from taxifare_flow import _core

FIRST_ROW, ROW_COUNT = 1200, 345


@pytest.fixture(scope="session")
def experiment(tls_server: TlsServer) -> str:
    """Two finished training runs tiling [0, FIRST_ROW + ROW_COUNT), logged by MLflow through
    SQLAlchemy/psycopg (libpq checking the chain: verify-ca)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tls_server.dsn(sslmode="verify-ca", sslrootcert=str(tls_server.ca)))
    name = f"tls-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    for first, count in ((0, FIRST_ROW), (FIRST_ROW, ROW_COUNT)):
        run = client.create_run(experiment_id)
        for key, value in {"context": "train", "first_row": first, "row_count": count}.items():
            client.log_param(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id, "FINISHED")
    return name


@pytest.fixture
def no_pgssl_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PGSSL* variable and no ~/.postgresql from the machine."""
    for name in ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def wm(dsn: str, experiment: str) -> int:
    return _core.get_latest_trained_row(dsn, experiment)


def one_clear_line(e: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(e.value)
    assert "\n" not in message, message
    assert PASSWORD not in message and "Pa55" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_require_encrypts_without_checking_the_certificate(tls_server: TlsServer, experiment: str, no_pgssl_env: None) -> None:
    assert wm(tls_server.dsn(sslmode="require"), experiment) == FIRST_ROW + ROW_COUNT
    # libpq's default, prefer, takes TLS when the server offers it.
    assert wm(tls_server.dsn(), experiment) == FIRST_ROW + ROW_COUNT


def test_verify_full_with_the_ca(tls_server: TlsServer, experiment: str, no_pgssl_env: None) -> None:
    dsn = tls_server.dsn(host="localhost", sslmode="verify-full", sslrootcert=str(tls_server.ca))
    assert wm(dsn, experiment) == FIRST_ROW + ROW_COUNT


def test_only_verify_full_checks_the_host_name(tls_server: TlsServer, experiment: str, no_pgssl_env: None) -> None:
    # The certificate names localhost only: 127.0.0.1 passes verify-ca, not verify-full.
    assert wm(tls_server.dsn(sslmode="verify-ca", sslrootcert=str(tls_server.ca)), experiment) == FIRST_ROW + ROW_COUNT
    with pytest.raises(_core.TrackingDbCertificateError) as e:
        wm(tls_server.dsn(sslmode="verify-full", sslrootcert=str(tls_server.ca)), experiment)
    one_clear_line(e, "host name mismatch", "127.0.0.1", "localhost", "sslmode=verify-full")


def test_a_wrong_ca_is_one_clear_line(tls_server: TlsServer, experiment: str, no_pgssl_env: None) -> None:
    with pytest.raises(_core.TrackingDbCertificateError) as e:
        wm(tls_server.dsn(host="localhost", sslmode="verify-full", sslrootcert=str(tls_server.wrong_ca)), experiment)
    one_clear_line(e, "unknown CA", str(tls_server.wrong_ca), "postgresql://postgres:***@localhost")
    # As in libpq, a root certificate makes require check the chain (verify-ca).
    with pytest.raises(_core.TrackingDbCertificateError) as e:
        wm(tls_server.dsn(sslmode="require", sslrootcert=str(tls_server.wrong_ca)), experiment)
    one_clear_line(e, "unknown CA")
    # Every TLS error is a watermark error, so callers catching those need no change.
    assert issubclass(_core.TrackingDbCertificateError, _core.TrackingDbTlsError)
    assert issubclass(_core.TrackingDbTlsError, _core.TrackingDbError)


def test_plaintext_against_hostssl_only_says_tls_is_required(tls_server: TlsServer, experiment: str, no_pgssl_env: None) -> None:
    with pytest.raises(_core.TrackingDbTlsRequiredError) as e:
        wm(tls_server.dsn(sslmode="disable"), experiment)
    one_clear_line(e, "requires TLS", "sslmode=disable", "set sslmode=require or stronger")
    # allow: plaintext refused, so TLS.
    assert wm(tls_server.dsn(sslmode="allow"), experiment) == FIRST_ROW + ROW_COUNT


def test_require_against_a_server_without_tls(postgres_password_server: tuple[str, str], no_pgssl_env: None) -> None:
    dsn, password = postgres_password_server
    with pytest.raises(_core.TrackingDbTlsNotOfferedError) as e:
        wm(dsn.replace("postgres@", f"postgres:{password}@") + "?sslmode=require", "x")
    message = str(e.value)
    assert "does not offer TLS" in message and "sslmode=require" in message and password not in message


def test_bad_tls_settings_name_the_parameter(tls_server: TlsServer, no_pgssl_env: None) -> None:
    with pytest.raises(_core.TrackingDbTlsError, match="sslmode=\"verify_full\" is not one of"):
        wm(tls_server.dsn(sslmode="verify_full"), "x")
    with pytest.raises(_core.TrackingDbTlsError, match="cannot read sslrootcert=/nonexistent/ca.pem"):
        wm(tls_server.dsn(sslmode="verify-full", sslrootcert="/nonexistent/ca.pem"), "x")


def test_client_certificate_authenticates(
    tls_server: TlsServer, experiment: str, no_pgssl_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_certuser = dataclasses.replace(tls_server, user="certuser")
    tls = {"sslmode": "verify-full", "sslrootcert": str(tls_server.ca)}
    dsn = as_certuser.dsn(host="localhost", password=False, sslcert=str(tls_server.client_cert),
                          sslkey=str(tls_server.client_key), **tls)
    assert wm(dsn, experiment) == FIRST_ROW + ROW_COUNT
    bare = as_certuser.dsn(host="localhost", password=False, **tls)
    with pytest.raises(_core.TrackingDbAuthError, match="certificate"):
        wm(bare, experiment)
    # As libpq: PGSSLCERT/PGSSLKEY when the DSN names none.
    monkeypatch.setenv("PGSSLCERT", str(tls_server.client_cert))
    monkeypatch.setenv("PGSSLKEY", str(tls_server.client_key))
    assert wm(bare, experiment) == FIRST_ROW + ROW_COUNT


def test_pgssl_environment_fills_what_the_dsn_lacks(
    tls_server: TlsServer, experiment: str, no_pgssl_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tls_server.dsn(host="localhost")
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    monkeypatch.setenv("PGSSLROOTCERT", str(tls_server.ca))
    assert wm(bare, experiment) == FIRST_ROW + ROW_COUNT
    # The variables are really what decides: a wrong CA there fails, disable there is refused.
    monkeypatch.setenv("PGSSLROOTCERT", str(tls_server.wrong_ca))
    with pytest.raises(_core.TrackingDbCertificateError, match="unknown CA"):
        wm(bare, experiment)
    monkeypatch.delenv("PGSSLROOTCERT")
    monkeypatch.setenv("PGSSLMODE", "disable")
    with pytest.raises(_core.TrackingDbTlsRequiredError):
        wm(bare, experiment)
    # The DSN's own sslmode wins over PGSSLMODE.
    assert wm(tls_server.dsn(host="localhost", sslmode="require"), experiment) == FIRST_ROW + ROW_COUNT


def test_settings_carry_tls_to_the_watermark_command(
    tls_server: TlsServer, experiment: str, clean_env: Path, no_pgssl_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "MLFLOW_DB_USER": "postgres", "MLFLOW_DB_PASSWORD": PASSWORD, "MLFLOW_DB_HOSTNAME": "localhost",
        "MLFLOW_DB_PORT": str(tls_server.port), "MLFLOW_DB_NAME": tls_server.database,
        "MLFLOW_DB_SSLMODE": "verify-full", "MLFLOW_DB_SSLROOTCERT": str(tls_server.ca), "MLFLOW_EXPERIMENT": experiment,
    }.items():
        monkeypatch.setenv(name, value)
    done = taxifare("watermark", cwd=clean_env, entry=True)
    assert (done.returncode, done.stdout.strip()) == (0, str(FIRST_ROW + ROW_COUNT)), done.stderr
    shown = taxifare("show_env", cwd=clean_env, entry=True)
    assert shown.returncode == 0, shown.stderr
    assert "verify-full" in shown.stdout and str(tls_server.ca) in shown.stdout
    assert "sslmode=verify-full&sslrootcert=" in shown.stdout  # in the composed DSN
    assert "Pa55" not in shown.stdout
    # Failures: exit 2 and one line, no password.
    monkeypatch.setenv("MLFLOW_DB_SSLROOTCERT", str(tls_server.wrong_ca))
    failed = taxifare("watermark", cwd=clean_env, entry=True)
    assert failed.returncode == 2 and failed.stdout == ""
    assert len(failed.stderr.strip().splitlines()) == 1 and "unknown CA" in failed.stderr and "Pa55" not in failed.stderr
    monkeypatch.setenv("MLFLOW_DB_SSLMODE", "disable")
    failed = taxifare("watermark", cwd=clean_env, entry=True)
    assert failed.returncode == 2 and "requires TLS" in failed.stderr and len(failed.stderr.strip().splitlines()) == 1
    monkeypatch.setenv("MLFLOW_DB_SSLMODE", "verify_full")
    failed = taxifare("watermark", cwd=clean_env, entry=True)
    assert failed.returncode == 2 and "MLFLOW_DB_SSLMODE='verify_full' is not one of" in failed.stderr


def test_a_kept_connection_survives_its_backend_being_terminated(
    tls_server: TlsServer, experiment: str, no_pgssl_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    """One connection per DSN, reused across calls, replaced once when it broke (and the log
    saying so masks the password)."""
    import logging

    import psycopg

    caplog.set_level(logging.DEBUG)

    tag = f"taxifare-reuse-{uuid.uuid4().hex[:8]}"
    dsn = tls_server.dsn(sslmode="require", application_name=tag)

    def backends(admin: psycopg.Connection) -> list[int]:
        rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (tag,)).fetchall()
        return [r[0] for r in rows]

    with psycopg.connect(tls_server.dsn(sslmode="require"), autocommit=True) as admin:
        assert wm(dsn, experiment) == FIRST_ROW + ROW_COUNT
        [first] = backends(admin)
        for _ in range(3):
            assert wm(dsn, experiment) == FIRST_ROW + ROW_COUNT
        assert backends(admin) == [first]
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        assert wm(dsn, experiment) == FIRST_ROW + ROW_COUNT
        [second] = backends(admin)
        assert second != first
        [reconnect] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reconnecting to ")]
        assert reconnect.startswith(f"reconnecting to postgresql://postgres:***@127.0.0.1:{tls_server.port}/"), reconnect
        assert "Pa55" not in caplog.text
        # A forked child must neither use nor close the parent's connection.
        pid = os.fork()
        if pid == 0:
            try:
                os._exit(0 if wm(dsn, experiment) == FIRST_ROW + ROW_COUNT else 1)
            except BaseException:  # noqa: BLE001 — the child reports through its exit status only
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert wm(dsn, experiment) == FIRST_ROW + ROW_COUNT
        # (The child's own backend may linger a moment after it exited.)
        assert second in backends(admin)
