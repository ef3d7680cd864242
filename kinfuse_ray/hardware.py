"""GPUs we know: dense bf16 peak FLOP/s (for MFU) and memory (for `kinfuse plan`).

Looked up by the exact name CUDA reports for the device, never by substring: "NVIDIA L40S" is
not an "L4", and an H100 PCIe card does not have the SXM part's peak. A device not in the table
gets no MFU (`train.peak_tflops` supplies a peak for it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    device_names: tuple[str, ...]  # as torch.cuda.get_device_name reports them
    peak_bf16: float  # dense (no sparsity) bf16 tensor-core FLOP/s
    memory_gib: float  # what the card offers a process, about

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * 2**30


# Vendor datasheets, dense bf16 (half the "with sparsity" figure).
GPUS: dict[str, Gpu] = {
    "H100-SXM": Gpu(("NVIDIA H100 80GB HBM3",), 989e12, 79.1),
    "H100-PCIe": Gpu(("NVIDIA H100 PCIe",), 756e12, 79.1),
    "H100-NVL": Gpu(("NVIDIA H100 NVL",), 835e12, 93.0),
    "H200": Gpu(("NVIDIA H200",), 989e12, 139.8),
    "H200-NVL": Gpu(("NVIDIA H200 NVL",), 835e12, 139.8),
    "A100-40GB": Gpu(("NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB"), 312e12, 39.4),
    "A100-80GB": Gpu(("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"), 312e12, 79.1),
    "L40S": Gpu(("NVIDIA L40S",), 362e12, 44.4),
    "L4": Gpu(("NVIDIA L4",), 121e12, 22.0),
    "A10": Gpu(("NVIDIA A10",), 125e12, 22.0),
}
_BY_DEVICE_NAME = {name: gpu for gpu in GPUS.values() for name in gpu.device_names}


def peak_flops(device_name: str, override_tflops: float | None = None) -> float | None:
    """Dense bf16 peak FLOP/s of the device CUDA calls `device_name`; `override_tflops` wins;
    None for a device we do not know (then no MFU is reported)."""
    if override_tflops is not None:
        return override_tflops * 1e12
    gpu = _BY_DEVICE_NAME.get(device_name.strip())
    return gpu.peak_bf16 if gpu else None
