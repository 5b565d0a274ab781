"""GPU utilisation and memory through NVML (nvidia-ml-py, imported as `pynvml`), when present.

No library, no driver or no device means no GPU readings at all: the agent then exports no GPU
series and heartbeats carry `gpu_util: null`, never an invented number. NVML calls are short
blocking C calls, so `sample()` is run in a worker thread by the caller.

The NVML module is a constructor parameter (default: `import pynvml`) because no GPU exists on
the machines the tests run on; the tests pass a fake module shaped like pynvml's API.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GpuReading:
    index: int
    utilization: float  # 0..1, fraction of the last sample period the GPU was busy
    memory_used_bytes: int
    memory_total_bytes: int


def load_nvml() -> Any | None:
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


class Gpus:
    """The GPUs NVML sees on this machine; `open()` returns None when there is none to read."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self._handles = handles

    @classmethod
    def open(cls, nvml: Any | None = None) -> Gpus | None:
        nvml = nvml if nvml is not None else load_nvml()
        if nvml is None:
            log.info("nvidia-ml-py is not installed: no GPU metrics")
            return None
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError subclasses: no driver, no library, no permission
            log.info("NVML unavailable (%s): no GPU metrics", exc)
            return None
        try:
            count = nvml.nvmlDeviceGetCount()
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as exc:
            log.warning("NVML could not list GPUs (%s): no GPU metrics", exc)
            nvml.nvmlShutdown()
            return None
        if not handles:
            nvml.nvmlShutdown()
            log.info("NVML sees no GPU: no GPU metrics")
            return None
        log.info("NVML: %d GPU(s)", len(handles))
        return cls(nvml, handles)

    @property
    def count(self) -> int:
        return len(self._handles)

    def sample(self) -> list[GpuReading]:
        """Read every GPU; one that fails to answer is left out of this sample."""
        readings = []
        for index, handle in enumerate(self._handles):
            try:
                rates = self._nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception as exc:
                log.debug("NVML read of GPU %d failed: %s", index, exc)
                continue
            readings.append(GpuReading(index, min(1.0, max(0.0, rates.gpu / 100.0)),
                                       int(memory.used), int(memory.total)))
        return readings

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception as exc:
            log.debug("NVML shutdown failed: %s", exc)


def mean_utilization(readings: list[GpuReading]) -> float | None:
    if not readings:
        return None
    return sum(r.utilization for r in readings) / len(readings)
