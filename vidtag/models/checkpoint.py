"""Reading checkpoint files safely: tensors only, never code.

A PyTorch `.pth`/`.pt`/`.bin` file is a pickle, and unpickling can run arbitrary code. vidtag reads
them only with `torch.load(weights_only=True)`, which accepts tensors and plain containers and refuses
anything else, or reads safetensors files, which cannot hold code at all, or takes only the named
tensors out of an ONNX model file (protocol-buffers data; its graph is never run). A refused file is a
FatalError (exit 3): the weights are unavailable, and nothing in the file has run.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

from ..errors import FatalError


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """The tensors in a checkpoint file (safetensors, a PyTorch pickle read with weights_only=True, or the
    named weights of an ONNX model, read as data by `onnx_tensors`)."""
    path = Path(path)
    if path.suffix == ".onnx":
        from .onnx_tensors import read_initializers

        return read_initializers(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise FatalError(f"cannot read the safetensors checkpoint {path}: {exc}") from None
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing a file
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(str(exc))
        if "global" not in reason.lower():  # not a reference to code: garbage, or pickle features refused
            raise FatalError(f"cannot read the checkpoint {path}: the safe loader does not accept it ({reason}): "
                             "it is damaged, not a PyTorch checkpoint, or holds more than weights") from None
        raise FatalError(
            f"refused to load the checkpoint {path}: it holds Python code references, not only weights, and "
            f"loading it could run code ({reason}). Use a safetensors file or a plain state dict of tensors"
        ) from None
    except FileNotFoundError:
        raise FatalError(f"the checkpoint {path} does not exist") from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise FatalError(f"cannot read the checkpoint {path}: it is damaged or not a PyTorch checkpoint "
                         f"({' '.join(str(exc).split())[:200]})") from None
    for key in ("state_dict", "model_state"):  # training checkpoints (PyTorchVideo's: model_state) wrap the
        if isinstance(state, dict) and isinstance(state.get(key), dict):  # weights with optimiser state etc.
            state = state[key]
            break
    if not isinstance(state, dict):
        raise FatalError(f"the checkpoint {path} does not hold a dictionary of weights")
    return state


def _unpickler_reason(text: str) -> str:
    """The specific part of torch's weights-only refusal (without its advice to turn safety off)."""
    body = " ".join(text.split())
    for cut in ("trusted source.", "WeightsUnpickler error:"):
        if cut in body:
            body = body.split(cut, 1)[1]
    return body.split("Check the documentation")[0].strip()[:200] or "refused"


def load_strict(net: Any, state: dict[str, Any], source: str | Path, arch: str | None = None) -> None:
    """Copy `state` into `net` (an nn.Module), refusing anything but tensors and any missing, unexpected or
    misshapen key: a FatalError that names them (the shared loader of vidtag's native families)."""
    import torch

    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FatalError(f"{source} holds no state dict: expected a dict of tensors, or one under the key "
                         "'model_state'")
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
                 for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or misshapen:

        def listing(what: str, keys: list[str]) -> str:
            shown = ", ".join(keys[:10]) + (f", ... ({len(keys)} in all)" if len(keys) > 10 else "")
            return f"{what}: {shown}"

        parts = [listing(w, k) for w, k in (("missing keys", missing), ("unexpected keys", unexpected),
                                             ("wrong shapes", misshapen)) if k]
        raise FatalError(f"the checkpoint {source} does not fit {arch or type(net).__name__}: " + "; ".join(parts))
    net.load_state_dict(state, strict=True)
