"""GPU readings come from NVML when it exists; otherwise there are none (never invented)."""

from __future__ import annotations

import types

import pytest

from worker_agent.gpu import Gpus, load_nvml, mean_utilization


class NVMLError(Exception):
    pass


def fake_nvml(utilizations: list[int], *, init_fails: bool = False) -> types.SimpleNamespace:
    """A stand-in for pynvml on a machine with GPUs (none exists where the tests run)."""
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if init_fails:
            raise NVMLError("NVML Shared Library Not Found")

    return types.SimpleNamespace(
        calls=calls,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: len(utilizations),
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=utilizations[h],
                                                                      memory=10),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=(h + 1) * 2**30,
                                                                total=80 * 2**30, free=0),
    )


def test_readings_are_fractions_per_gpu() -> None:
    nvml = fake_nvml([50, 100])
    gpus = Gpus.open(nvml)
    assert gpus is not None and gpus.count == 2
    readings = gpus.sample()
    assert [r.utilization for r in readings] == [0.5, 1.0]
    assert [r.memory_used_bytes for r in readings] == [2**30, 2 * 2**30]
    assert mean_utilization(readings) == pytest.approx(0.75)
    gpus.close()
    assert nvml.calls == ["init", "shutdown"]


def test_no_driver_or_no_device_means_no_gpu_readings() -> None:
    assert Gpus.open(fake_nvml([50], init_fails=True)) is None
    empty = fake_nvml([])
    assert Gpus.open(empty) is None and empty.calls == ["init", "shutdown"]
    assert mean_utilization([]) is None


def test_without_the_library_installed_there_is_no_gpu() -> None:
    if load_nvml() is not None:
        pytest.skip("nvidia-ml-py is installed here")
    assert Gpus.open() is None
