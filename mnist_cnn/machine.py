"""What a measurement ran on: CPU model, cores, torch version, device, for the captions of\nresults tables and their JSON."""

from __future__ import annotations

import functools
import os
import platform

import torch


@functools.cache  # a sweep keys every run by it, and polls its runs
def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it (else what platform knows)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(device: str = "cpu") -> dict:
    """Plain data for a results table's caption and for JSON."""
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": gpu or device,
    }


def caption(machine: dict) -> str:
    """describe_machine's data as one line."""
    return (
        f"{machine['cpu']}, {machine['cores']} cores ({machine['torch_threads']} torch threads), "
        f"torch {machine['torch']}, Python {machine['python']}, device {machine['device']}"
    )
