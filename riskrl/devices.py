"""Device names from users, checked once with a clear error."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; ValueError when it is malformed or not available here.

    Checked: the name parses (``"banana"``, ``None`` and non-strings are refused), CUDA / MPS are
    available when asked for, and a CUDA index names an existing device (``"cuda:99"``).
    """
    if not isinstance(device, (str, torch.device)) or isinstance(device, bool):
        raise ValueError(f"invalid device {device!r}: expected a name such as 'cpu', 'cuda' or 'cuda:0'")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"invalid device {device!r}: {str(err).splitlines()[0]}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r} requested, but this torch build has no usable CUDA device"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {str(device)!r} requested, but only {count} CUDA device(s) exist")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} requested, but MPS is not available")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(device)!r} is not supported by riskrl (use cpu, cuda or mps)")
    return dev
