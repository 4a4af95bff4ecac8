"""Settings that would be unsafe are refused when they are loaded, with what to set instead."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.domain.codes import Service
from shared.settings import Settings
from tests.conftest import make_settings

INDEX_KEY = "index-key-0123456789-0123456789-abcdef"


@pytest.mark.parametrize("secret", ["x", "a" * 31, "短" * 10])  # 1, 31 and 30 bytes
def test_production_refuses_a_jwt_secret_shorter_than_32_bytes(secret: str) -> None:
    settings = Settings(environment="production", jwt_secret=secret, index_key=INDEX_KEY)
    with pytest.raises(ValueError, match=r"COMPLAINTS_JWT_SECRET .*at least 32"):
        settings.check()


@pytest.mark.parametrize("secret", ["a" * 32, "短" * 11])  # 32 and 33 bytes
def test_production_takes_a_jwt_secret_of_32_bytes(secret: str) -> None:
    Settings(environment="production", jwt_secret=secret, index_key=INDEX_KEY).check()


def test_development_takes_a_short_jwt_secret() -> None:
    Settings(environment="development", jwt_secret="x").check()


def test_trusted_proxies_are_addresses_and_networks_separated_by_commas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COMPLAINTS_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.5,fd00::/8")
    assert Settings().trusted_proxies == [
        ip_network("10.0.0.0/8"),
        ip_network("192.168.1.5/32"),
        ip_network("fd00::/8"),
    ]
    monkeypatch.delenv("COMPLAINTS_TRUSTED_PROXIES")
    assert Settings().trusted_proxies == []


@pytest.mark.parametrize("value", ["localhost", "10.0.0.0/33", "10.0.0.1;10.0.0.2"])
def test_a_trusted_proxy_that_is_no_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("COMPLAINTS_TRUSTED_PROXIES", value)
    with pytest.raises(ValidationError, match="COMPLAINTS_TRUSTED_PROXIES takes IP addresses"):
        Settings()


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://sso.example.cn/realms/ops/protocol/openid-connect/certs", False),
        ("http://127.0.0.1:8080/certs", False),  # a sidecar on this machine
        ("http://localhost:8080/certs", False),
        ("http://sso.example.cn/certs", True),  # keys over a network in plain http
    ],
)
def test_production_fetches_the_providers_keys_over_https(url: str, refused: bool) -> None:
    settings = make_settings("sqlite:///unused.sqlite3", environment="production", jwks_url=url)
    if refused:
        with pytest.raises(ValueError, match="must be https"):
            settings.check()
    else:
        settings.check()


def test_the_consoles_service_urls_keep_make_runs_for_a_service_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "COMPLAINTS_CONSOLE_SERVICE_URLS", '{"investigation": "https://inv.internal:8443"}'
    )
    urls = Settings().console_service_urls
    assert urls[Service.INVESTIGATION] == "https://inv.internal:8443"
    assert urls[Service.CALLBACK] == "http://127.0.0.1:8004"


@pytest.mark.parametrize("value", ['{"billing": "http://a"}', '{"intake": "ftp://a"}'])
def test_a_console_service_url_for_no_service_or_no_http_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("COMPLAINTS_CONSOLE_SERVICE_URLS", value)
    with pytest.raises(ValidationError, match="console_service_urls"):
        Settings()


def test_settings_are_read_from_files_in_the_secrets_directory(tmp_path: Path) -> None:
    """Secrets mounted as files (a Kubernetes Secret volume): one file per setting, named as
    its environment variable, in any case; an environment variable wins over a file."""
    (tmp_path / "complaints_jwt_secret").write_text("s" * 40 + "\n")
    (tmp_path / "COMPLAINTS_INDEX_KEY").write_text(INDEX_KEY)
    (tmp_path / "complaints_log_level").write_text("warning")
    settings = Settings(_secrets_dir=tmp_path)  # type: ignore[call-arg]
    assert settings.jwt_secret.get_secret_value() == "s" * 40
    assert settings.index_key.get_secret_value() == INDEX_KEY
    settings.check()


def test_an_environment_variable_wins_over_a_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "complaints_log_level").write_text("warning")
    monkeypatch.setenv("COMPLAINTS_LOG_LEVEL", "debug")
    assert Settings(_secrets_dir=tmp_path).log_level == "debug"  # type: ignore[call-arg]


def test_a_missing_secrets_directory_is_no_error_and_no_warning(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        settings = Settings(_secrets_dir=tmp_path / "absent")  # type: ignore[call-arg]
    assert settings.log_level == "info"


@pytest.mark.parametrize("port", ["0", "65536", "metrics"])
def test_a_metrics_port_that_is_no_port_is_refused(
    port: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPLAINTS_METRICS_PORT", port)
    with pytest.raises(ValidationError, match="metrics_port"):
        Settings()


def test_the_server_refuses_to_serve_the_api_on_the_metrics_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.cli.serve import main

    monkeypatch.setenv("COMPLAINTS_METRICS_PORT", "9100")
    with pytest.raises(SystemExit) as exited:
        main(["intake", "--port", "9100"])
    assert exited.value.code == 2
    assert "COMPLAINTS_METRICS_PORT" in capsys.readouterr().err
