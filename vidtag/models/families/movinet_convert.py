"""MoViNet's published TensorFlow checkpoints -> vidtag's torch state dict.

The Model Garden publishes MoViNet as TensorFlow object-based checkpoints (`movinet_a0_base.tar.gz` holds
`ckpt-1.index` and `ckpt-1.data-00000-of-00001`), written by `tf.train.Checkpoint(model=model)` with the
classifier of `official/projects/movinet` (Apache-2.0). Their variables are named by object path, e.g.

    model/layer_with_weights-0/layer_with_weights-3/_feature/_conv_temporal/_conv/depthwise_kernel

where `model/layer_with_weights-0` is the backbone, whose weighted layers are numbered in order (stem = 0,
the blocks 1..N, the head N+1), and `model/layer_with_weights-1` the classifier head. Kernels come as
Conv3D (kt, kh, kw, in, out), Conv2D (kh, kw, in, out) or DepthwiseConv2D (kh, kw, C, 1) arrays,
depending on the checkpoint's conv type; all map onto the same torch Conv3d weights.

Reading a checkpoint needs TensorFlow (`pip install tensorflow-cpu`, about 250 MB: never a vidtag
dependency), once, on the machine that converts:

    python -m vidtag.models.families.movinet_convert movinet_a0_stream/ckpt-1 movinet_a0_stream.safetensors

The mapping itself (`convert_tf_variables`) is plain numpy and torch.
"""

from __future__ import annotations

import argparse
import re
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ...errors import ConfigError, FatalError
from .movinet_net import VARIANTS, MoViNet

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_BACKBONE = "model/layer_with_weights-0/layer_with_weights-"
_CLASSIFIER = "model/layer_with_weights-1/"
_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
# the reference's layer attribute -> this port's module, inside one block
_BLOCK_PARTS = {"_expansion": "expansion", "_projection": "projection", "_skip/_projection": "skip"}


def is_tf_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a TensorFlow checkpoint: a prefix (with its .index), a folder of one, or a .tar.gz."""
    path = Path(path)
    return (path.name.endswith((".tar.gz", ".tgz")) or Path(str(path) + ".index").exists()
            or path.suffix == ".index" or (path.is_dir() and any(path.glob("*.index"))))


def _extract(archive: Path, into: Path) -> Path:
    """The published tarball's files, unpacked with the safe 'data' filter (no links out, no devices)."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise FatalError(f"cannot unpack {archive}: {exc}") from None
    indexes = sorted(into.rglob("*.index"))
    if not indexes:
        raise FatalError(f"{archive} holds no TensorFlow checkpoint (no .index file)")
    return indexes[-1].with_suffix("")


def read_tf_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Every variable of a TensorFlow checkpoint (a prefix such as `ckpt-1`, or its folder), by object path."""
    try:
        import tensorflow as tf
    except ImportError:
        raise ConfigError("reading a TensorFlow checkpoint needs TensorFlow: pip install tensorflow-cpu "
                          "(only for the conversion; vidtag runs the converted file without it)") from None
    if str(path).endswith((".tar.gz", ".tgz")):
        with tempfile.TemporaryDirectory() as tmp:
            return read_tf_checkpoint(_extract(Path(path), Path(tmp)))
    path = str(path).removesuffix(".index")
    if Path(path).is_dir():
        found = tf.train.latest_checkpoint(path)  # the folder's `checkpoint` file names the latest
        if found is None:  # no such file: the one ckpt-N.index there
            indexes = sorted(Path(path).glob("*.index"))
            if len(indexes) != 1:
                raise FatalError(f"no single TensorFlow checkpoint in the folder {path} (expected one "
                                 f"ckpt-N.index, found {len(indexes)}): give the checkpoint's prefix")
            found = str(indexes[0].with_suffix(""))
        path = found
    try:
        reader = tf.train.load_checkpoint(path)
    except (tf.errors.OpError, ValueError) as exc:
        raise FatalError(f"cannot read the TensorFlow checkpoint {path}: {str(exc).splitlines()[0]}") from None
    names = reader.get_variable_to_shape_map()
    return {name.removesuffix(_SUFFIX): reader.get_tensor(name) for name in names
            if name.startswith("model/") and name.endswith(_SUFFIX)}


def detect_variant(variables: Mapping[str, np.ndarray]) -> tuple[str, bool]:
    """('A0' | 'A1' | 'A2', stream?) from the number of blocks and the SE width of the first block."""
    layers = {int(m.group(1)) for k in variables if (m := re.match(re.escape(_BACKBONE) + r"(\d+)/", k))}
    blocks = len(layers) - 2  # without the stem and the head
    match = [name for name, v in VARIANTS.items() if sum(len(s[1]) for s in v.stages) == blocks
             and _stem_width(variables) == v.stem]
    if len(match) != 1:
        raise FatalError(f"the checkpoint is not a MoViNet A0, A1 or A2 classifier ({blocks} blocks found)")
    reduce = next((v for k, v in variables.items() if k.startswith(_BACKBONE + "1/_attention/_se_reduce/")
                   and k.endswith("kernel")), None)
    expand = next((v for k, v in variables.items() if k.startswith(_BACKBONE + "1/_expansion/")
                   and k.endswith("kernel")), None)
    if reduce is None or expand is None:
        raise FatalError("the checkpoint has no squeeze-excitation in its first block: not a MoViNet classifier")
    # the stream models' SE reads [cumulative mean, frame mean]: twice the block's width
    return match[0], reduce.shape[-2] == 2 * expand.shape[-1]


def _stem_width(variables: Mapping[str, np.ndarray]) -> int:
    kernel = next((v for k, v in variables.items() if k.startswith(_BACKBONE + "0/") and k.endswith("kernel")), None)
    return -1 if kernel is None else int(kernel.shape[-1])


def _conv_weight(array: np.ndarray, target: torch.Size, depthwise: bool) -> torch.Tensor:
    """A TensorFlow conv kernel as a torch Conv3d weight (out, in/groups, kt, kh, kw)."""
    if array.ndim == 5:  # Conv3D: (kt, kh, kw, in/groups, out)
        out = array.transpose(4, 3, 0, 1, 2)
    elif array.ndim == 4 and depthwise:  # DepthwiseConv2D: (a, b, C, 1), a x b = kh x kw or kt x 1
        out = array.transpose(2, 3, 0, 1)
    elif array.ndim == 4:  # Conv2D: (a, b, in, out)
        out = array.transpose(3, 2, 0, 1)
    else:
        raise FatalError(f"unexpected kernel shape {array.shape}")
    if int(np.prod(out.shape)) != int(np.prod(target)):
        raise FatalError(f"kernel of shape {array.shape} does not fit {tuple(target)}")
    return torch.from_numpy(np.ascontiguousarray(out)).reshape(target).float()


def _torch_key(tf_key: str) -> tuple[str, bool] | None:
    """(this port's parameter name, depthwise?) for a reference variable, or None if unknown."""
    if tf_key.startswith(_CLASSIFIER):
        rest = tf_key[len(_CLASSIFIER):]
        layer = {"_head/": "classifier.0.", "_classifier/": "classifier.2."}.get(rest.split("/")[0] + "/")
        if layer is None:
            return None
        return layer + ("bias" if rest.endswith("bias") else "weight"), False
    m = re.match(re.escape(_BACKBONE) + r"(\d+)/(.*)$", tf_key)
    if m is None:
        return None
    index, rest = int(m.group(1)), m.group(2)
    leaf = rest.split("/")[-1]
    if index == 0:
        module = "stem"
        rest = rest.removeprefix("_stem/")
    else:
        module = f"blocks.{index - 1}"
    if rest.startswith("_mobile_bottleneck/_rezero/"):
        return f"{module}.rezero", False
    if rest.startswith("_project/"):  # the head's 1x1 projection (the layer after the last block)
        module, rest = "head", rest.removeprefix("_project/")
    elif rest.startswith("_attention/"):
        part = "reduce" if "/_se_reduce/" in rest else "expand"
        return f"{module}.se.{part}.{'bias' if leaf == 'bias' else 'weight'}", False
    else:
        for prefix, name in _BLOCK_PARTS.items():
            if rest.startswith(prefix + "/"):
                module, rest = f"{module}.{name}", rest[len(prefix) + 1:]
                break
        else:
            if rest.startswith("_feature/"):
                rest = rest.removeprefix("_feature/")
                temporal = rest.startswith("_conv_temporal/") or rest.startswith("_batch_norm_temporal/")
                module = f"{module}.feature.{'temporal' if temporal else 'conv'}"
                rest = rest.replace("_conv_temporal/", "_conv/").replace("_batch_norm_temporal/", "_batch_norm/")
    if module.endswith(".skip") or module == "stem" or module == "head" or ".expansion" in module \
            or ".projection" in module or ".feature." in module:
        if rest.startswith("_batch_norm/") and leaf in _BN:
            return f"{module}.bn.{_BN[leaf]}", False
        if leaf in ("kernel", "depthwise_kernel") and rest.startswith("_conv/"):
            return f"{module}.conv.weight", leaf == "depthwise_kernel"
    return None


def convert_tf_variables(variables: Mapping[str, np.ndarray], variant: str | None = None,
                         stream: bool | None = None) -> dict[str, torch.Tensor]:
    """The reference's variables (object paths, as `read_tf_checkpoint` gives them) as this port's state
    dict; variant and configuration detected unless given. Unknown, missing or misshapen variables are a
    FatalError naming them."""
    found_variant, found_stream = detect_variant(variables)
    variant = variant or found_variant
    stream = found_stream if stream is None else stream
    net = MoViNet(VARIANTS[variant.upper()], causal=stream,
                  num_classes=int(variables[_CLASSIFIER + "_classifier/_conv/bias"].shape[-1])
                  if _CLASSIFIER + "_classifier/_conv/bias" in variables
                  else int(variables[_CLASSIFIER + "_classifier/_conv/_conv/bias"].shape[-1]))
    own = net.state_dict()
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for tf_key, array in variables.items():
        mapped = _torch_key(tf_key)
        if mapped is None or mapped[0] not in own:
            unknown.append(tf_key)
            continue
        key, depthwise = mapped
        target = own[key].shape
        if key.endswith("conv.weight") or key.startswith("blocks.") and ".se." in key and key.endswith("weight"):
            out[key] = _conv_weight(np.asarray(array), target, depthwise)
        elif key.startswith("classifier.") and key.endswith("weight"):
            matrix = np.asarray(array).reshape(-1, array.shape[-1]).T  # (..., in, out) -> (out, in)
            out[key] = torch.from_numpy(np.ascontiguousarray(matrix)).float()
        else:
            out[key] = torch.from_numpy(np.asarray(array, dtype=np.float32).reshape(target))
    for key, value in own.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros_like(value)
    missing = [k for k in own if k not in out]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append("unknown variables: " + ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else ""))
        if missing:
            parts.append("nothing for: " + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
        raise FatalError(f"the checkpoint does not fit MoViNet-{variant} {'stream' if stream else 'base'}: "
                         + "; ".join(parts))
    return out


def convert_tf_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A published MoViNet TensorFlow checkpoint (prefix or folder) as this port's torch state dict."""
    return convert_tf_variables(read_tf_checkpoint(path))


def main(argv: list[str] | None = None) -> None:
    """Command line: convert a checkpoint to a safetensors file that vidtag loads with --weights."""
    parser = argparse.ArgumentParser(description="Convert a MoViNet TensorFlow checkpoint for vidtag.")
    parser.add_argument("checkpoint", help="ckpt-1 prefix (or its folder) from the Model Garden tarball")
    parser.add_argument("output", help="output .safetensors file")
    args = parser.parse_args(argv)
    from safetensors.torch import save_file

    variables = read_tf_checkpoint(args.checkpoint)
    variant, stream = detect_variant(variables)
    save_file(convert_tf_variables(variables), args.output,
              metadata={"variant": variant, "stream": str(stream), "source": str(args.checkpoint)})
    print(f"MoViNet-{variant} {'stream' if stream else 'base'} -> {args.output}")


if __name__ == "__main__":
    main()
