"""tools/preflight.py's decisions: which CA bundle builds trust, and what to do for a missing image."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import preflight
from tools.preflight import CaChoice, PreflightError, choose_ca, dotenv_value, image_action


def no_pip_cert() -> None:
    return None


@pytest.fixture
def bundle(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


def test_extra_ca_bundle_wins_over_the_hosts_settings(bundle: str, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    other.write_text("x")
    env = {"EXTRA_CA_BUNDLE": bundle, "PIP_CERT": str(other)}
    assert choose_ca(env, lambda: str(other)) == CaChoice(bundle, "EXTRA_CA_BUNDLE")


def test_an_extra_ca_bundle_that_is_not_a_file_stops(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match="is not a file"):
        choose_ca({"EXTRA_CA_BUNDLE": str(tmp_path / "missing.pem")}, no_pip_cert)


def test_without_extra_ca_bundle_pips_configured_cert_comes_first(bundle: str, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    other.write_text("x")
    assert choose_ca({"PIP_CERT": str(other)}, lambda: bundle) == CaChoice(bundle, "pip's configured cert")


@pytest.mark.parametrize("variable", ["PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_then_the_variables_the_hosts_tools_read(variable: str, bundle: str) -> None:
    assert choose_ca({variable: bundle}, no_pip_cert) == CaChoice(bundle, variable)


def test_settings_naming_missing_files_are_passed_over(bundle: str, tmp_path: Path) -> None:
    env = {"PIP_CERT": str(tmp_path / "gone.pem"), "SSL_CERT_FILE": bundle}
    assert choose_ca(env, lambda: str(tmp_path / "gone-too.pem")) == CaChoice(bundle, "SSL_CERT_FILE")


def test_no_ca_setting_means_no_bundle() -> None:
    assert choose_ca({}, no_pip_cert) is None


def test_dotenv_value_reads_the_key_and_ignores_comments(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("#EXTRA_CA_BUNDLE=/commented.pem\nAPI_PORT=5000\nEXTRA_CA_BUNDLE='/etc/ca.pem'\n")
    assert dotenv_value(env_file, "EXTRA_CA_BUNDLE") == "/etc/ca.pem"
    assert dotenv_value(env_file, "MISSING") is None
    assert dotenv_value(tmp_path / "absent", "EXTRA_CA_BUNDLE") is None


def test_a_present_image_is_left_alone() -> None:
    pulls: list[str] = []
    assert image_action("postgres:18-trixie", lambda i: True, lambda i: pulls.append(i) or True) == "present"
    assert pulls == []


def test_a_missing_image_is_pulled_when_a_registry_has_it() -> None:
    assert image_action("postgres:18-trixie", lambda i: False, lambda i: True) == "pulled"


def test_a_missing_image_no_registry_has_gets_its_stand_in() -> None:
    assert image_action("postgres:18-trixie", lambda i: False, lambda i: False) == "stand-in"


def test_without_an_engine_preflight_stops_with_one_line_naming_make_engine(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(preflight, "docker_binary", lambda: "/nonexistent/docker")
    assert preflight.main() == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "make engine" in err
