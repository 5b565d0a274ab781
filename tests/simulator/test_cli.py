"""The `flotilla sim` command line: settings from flags and environment, clear refusals."""

from __future__ import annotations

import pytest

from fleet.settings import SettingsError, load_settings
from flotilla.cli import main as flotilla_main
from simulator.cli import main
from simulator.settings import SimulatorSettings


def test_flags_win_over_environment_and_each_kind_has_its_batch_default() -> None:
    settings = load_settings(SimulatorSettings, ["--ttft-ms", "5"],
                             {"SIM_TTFT_MS": "50", "SIM_KIND": "tei", "SIM_CRASH_AFTER": ""})
    assert settings.ttft_ms == 5.0 and settings.kind == "tei"
    assert settings.crash_after is None
    assert settings.batch_size == 32
    assert load_settings(SimulatorSettings, [], {}).batch_size == 256
    assert load_settings(SimulatorSettings, ["--max-num-seqs", "8"], {}).batch_size == 8


@pytest.mark.parametrize("argv, message", [
    (["--error-rate", "0.7", "--hang-rate", "0.5"], "--error-rate (0.7) + --hang-rate (0.5)"),
    (["--kind", "sglang"], "--kind must be one of vllm, tei"),
    (["--error-rate", "2"], "--error-rate must be <= 1"),
    (["--model", " "], "--model must not be empty"),
])
def test_bad_settings_exit_2_naming_the_flag(argv: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_settings_errors_are_settings_errors() -> None:
    with pytest.raises(SettingsError):
        load_settings(SimulatorSettings, ["--port", "0"], {})


def test_flotilla_lists_the_sim_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert flotilla_main(["--help"]) == 0
    assert "sim" in capsys.readouterr().out
