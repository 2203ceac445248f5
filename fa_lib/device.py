"""The one device resolver of the library: ``"auto"`` picks CUDA when torch sees a GPU, else the CPU."""
from __future__ import annotations

__all__ = ["resolve_device", "DEVICE_CHOICES"]

#: what the command line accepts (``cuda:N`` is accepted by the API as well)
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device=None):
    """A ``torch.device`` for ``"auto"`` / ``None``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
    ``torch.device``. Asking for CUDA where torch sees none is a ``ValueError`` that says so."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = "auto" if device is None else str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and name != "cuda" and not name.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but torch sees no CUDA device; use 'cpu' or 'auto'")
    return torch.device(name)
