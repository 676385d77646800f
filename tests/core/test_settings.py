from __future__ import annotations

import pytest

from shared.settings import SettingsError, load_settings


def test_embedded_defaults_need_no_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PARLEY_REDIS_URL", "PARLEY_KAFKA_BOOTSTRAP", "PARLEY_QDRANT_URL"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings()
    assert settings.redis_url == "" and settings.kafka_bootstrap == "" and settings.qdrant_url == ""
    assert settings.allow_unsigned_streams is True
    assert settings.asr_model == "tiny.en"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_KAFKA_BOOTSTRAP", "b1:9092,b2:9094")
    monkeypatch.setenv("PARLEY_MEDIA_MAX_CALLS", "40")
    settings = load_settings()
    assert settings.kafka_bootstrap == "b1:9092,b2:9094"
    assert settings.media_max_calls == 40


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("PARLEY_MEDIA_MAX_CALLS", "lots", "PARLEY_MEDIA_MAX_CALLS"),
        ("PARLEY_MEDIA_MAX_CALLS", "0", "PARLEY_MEDIA_MAX_CALLS"),
        ("PARLEY_KAFKA_BOOTSTRAP", "broker-without-port", "PARLEY_KAFKA_BOOTSTRAP"),
        ("PARLEY_REDIS_URL", "http://cache:6379", "PARLEY_REDIS_URL"),
        ("PARLEY_DATABASE_URL", "mysql://db/x", "PARLEY_DATABASE_URL"),
        ("PARLEY_ENV", "staging", "PARLEY_ENV"),
        ("PARLEY_RECORDING_STORE", "ftp://x", "PARLEY_RECORDING_STORE"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert fragment in str(info.value)


def test_secrets_are_read_from_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="parley/db", SecretString="postgresql://app:pw@db.internal:5432/parley"
        )["ARN"]
        monkeypatch.setenv("PARLEY_DATABASE_URL_SECRET_ARN", arn)
        settings = load_settings()
    assert settings.database_url == "postgresql://app:pw@db.internal:5432/parley"


def test_unreadable_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("PARLEY_TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv(
        "PARLEY_TWILIO_AUTH_TOKEN_SECRET_ARN",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:missing",
    )
    with mock_aws(), pytest.raises(SettingsError, match="PARLEY_TWILIO_AUTH_TOKEN_SECRET_ARN"):
        load_settings()


def test_an_optional_secret_created_empty_leaves_its_setting_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Pulumi program creates every secret entry; one the operator did not fill (no LLM
    key) must not stop the process: the setting is simply not configured."""
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("PARLEY_LLM_API_KEY", raising=False)
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    with mock_aws():
        client = boto3.client("secretsmanager")
        empty = client.create_secret(Name="parley/dev/openai-api-key")["ARN"]  # no value
        monkeypatch.setenv("PARLEY_LLM_API_KEY_SECRET_ARN", empty)
        assert load_settings().llm_api_key.get_secret_value() == "none"  # the default
        # A required one left empty fails, by its own name.
        url = client.create_secret(Name="parley/dev/database-url")["ARN"]
        monkeypatch.setenv("PARLEY_DATABASE_URL_SECRET_ARN", url)
        monkeypatch.setenv("PARLEY_ENV", "production")
        monkeypatch.setenv("PARLEY_SESSION_TOKEN_SECRET", "s" * 40)
        with pytest.raises(SettingsError, match="PARLEY_DATABASE_URL"):
            load_settings()


def test_production_refuses_the_development_session_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_ENV", "production")
    monkeypatch.setenv("PARLEY_DATABASE_URL", "postgresql://app@db.internal:5432/parley")
    monkeypatch.delenv("PARLEY_SESSION_TOKEN_SECRET", raising=False)
    with pytest.raises(SettingsError, match="PARLEY_SESSION_TOKEN_SECRET"):
        load_settings()
    monkeypatch.setenv("PARLEY_SESSION_TOKEN_SECRET", "x" * 40)
    assert load_settings().production


def test_production_refuses_the_loopback_database_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployed process whose database URL secret went missing must not start on the default."""
    monkeypatch.setenv("PARLEY_ENV", "production")
    monkeypatch.setenv("PARLEY_SESSION_TOKEN_SECRET", "x" * 40)
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    with pytest.raises(SettingsError, match="PARLEY_DATABASE_URL"):
        load_settings()
    monkeypatch.setenv("PARLEY_DATABASE_URL", "postgresql://app@db.internal:5432/parley")
    assert load_settings().production


def test_a_subclass_of_settings_loads_through_the_same_loader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from functions.common.config import FunctionSettings

    monkeypatch.setenv("PARLEY_PUBLIC_BASE_URL", "https://api.example.com/")
    loaded = load_settings(FunctionSettings)
    assert isinstance(loaded, FunctionSettings)
    assert loaded.public_base_url == "https://api.example.com"
