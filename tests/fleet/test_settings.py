"""Settings: flags win over the environment, which wins over defaults; errors name the input."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fleet.settings import SettingsError, describe, load_settings, option


@dataclass(frozen=True)
class ExampleSettings:
    port: int = option(8080, flag="--port", env="EXAMPLE_PORT", minimum=1, maximum=65535)
    interval_s: float = option(10.0, flag="--interval", env="HEARTBEAT_INTERVAL_S", minimum=0.01)
    engine: str = option("vllm", flag="--engine", env="ENGINE", choices=("vllm", "tei"))
    token: str | None = option(None, env="WORKER_AUTH_TOKEN", secret=True)
    networks: tuple[str, ...] = option(("127.0.0.0/8",), env="WORKER_NETWORKS")
    verbose: bool = option(False, flag="--verbose", env="VERBOSE")

    def __post_init__(self) -> None:
        if self.engine == "tei" and self.port == 8000:
            raise SettingsError(f"ENGINE=tei cannot use port {self.port}")


def test_defaults_apply_when_nothing_is_given() -> None:
    settings = load_settings(ExampleSettings, [], {})
    assert settings == ExampleSettings()


def test_flags_win_over_environment() -> None:
    settings = load_settings(ExampleSettings, ["--port", "9000"], {"EXAMPLE_PORT": "7000"})
    assert settings.port == 9000


def test_environment_is_converted_to_field_types() -> None:
    settings = load_settings(ExampleSettings, [], {
        "EXAMPLE_PORT": "7000", "HEARTBEAT_INTERVAL_S": "2.5", "VERBOSE": "yes",
        "WORKER_NETWORKS": "10.0.0.0/8, 192.168.0.0/16", "WORKER_AUTH_TOKEN": ""})
    assert settings.port == 7000
    assert settings.interval_s == 2.5
    assert settings.verbose is True
    assert settings.networks == ("10.0.0.0/8", "192.168.0.0/16")
    assert settings.token is None


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {"EXAMPLE_PORT": "eighty"}, "EXAMPLE_PORT must be an integer"),
        (["--port", "0"], {}, "--port must be >= 1"),
        ([], {"HEARTBEAT_INTERVAL_S": "abc"}, "HEARTBEAT_INTERVAL_S must be a number"),
        ([], {"ENGINE": "sglang"}, "ENGINE must be one of vllm, tei"),
        ([], {"VERBOSE": "maybe"}, "VERBOSE must be a boolean"),
        (["--engine", "tei", "--port", "8000"], {}, "ENGINE=tei cannot use port 8000"),
    ],
)
def test_bad_input_names_the_flag_or_variable(argv: list[str], env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(ExampleSettings, argv, env)


def test_describe_masks_secrets() -> None:
    settings = load_settings(ExampleSettings, [], {"WORKER_AUTH_TOKEN": "wt-flt-secret"})
    assert describe(settings)["token"] == "***"
    assert "wt-flt-secret" not in repr(describe(settings))


def test_repr_does_not_show_secrets() -> None:
    settings = load_settings(ExampleSettings, [], {"WORKER_AUTH_TOKEN": "wt-flt-secret"})
    assert "wt-flt-secret" not in repr(settings)
