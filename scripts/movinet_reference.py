"""Logits of the reference MoViNet (TensorFlow Model Garden) on seeded random weights, for the parity test.

Runs in a scratch environment with TensorFlow and the Model Garden, never in vidtag's own:

    python3 -m venv /tmp/scratch-movinet
    /tmp/scratch-movinet/bin/pip install tensorflow-cpu tf-keras absl-py six pyyaml gin-config \
        tensorflow-datasets scipy pycocotools pillow opencv-python-headless matplotlib
    # the Model Garden's source (official/...), e.g. unpacked from the tf-models-official wheel:
    pip download --no-deps tf-models-official && python -m zipfile -e tf_models_official-*.whl /tmp/tfm
    PYTHONPATH=/tmp/tfm /tmp/scratch-movinet/bin/python scripts/movinet_reference.py [--models a0 a1 a2]

For each model it builds the classifier the way the Model Garden's README builds the published ones
(base: 3D, swish; stream: causal (2+1)D, hard-swish, 2plus3d squeeze-excitation), gives every variable
seeded random values (`tests/movinet_fixtures.py`), writes a TensorFlow checkpoint of them (the published
format, for testing the converter end to end; `--checkpoints DIR`), and records the variable layout and
the logits on seeded random clips: the recipe clip and an odd-sized one (which exercises TensorFlow's
asymmetric "same" padding), and for the stream models also the logits after each chunk when fed 8 frames
at a time, and frame by frame. Output: tests/data/movinet_reference.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from movinet_fixtures import FIXTURE, random_clip, random_variables  # noqa: E402

RECIPE_SIZE = {"a0": 172, "a1": 172, "a2": 224}
STREAM_CONFIG = dict(causal=True, conv_type="2plus1d", se_type="2plus3d", activation="hard_swish",
                     gating_activation="hard_sigmoid", use_positional_encoding=False)


def build(model_id: str, stream: bool):
    from official.projects.movinet.modeling import movinet, movinet_model

    if stream:
        backbone = movinet.Movinet(model_id=model_id, use_external_states=True, **STREAM_CONFIG)
    else:
        backbone = movinet.Movinet(model_id=model_id, causal=False, use_external_states=False)
    model = movinet_model.MovinetClassifier(backbone, num_classes=600, output_states=stream)
    model.build([1, 1, 1, 1, 3])
    return model


def object_paths(model, scratch: Path) -> dict[str, object]:
    """Checkpoint object path -> variable: each variable is filled with its index, saved, read back."""
    import tensorflow as tf

    for i, var in enumerate(model.variables):
        var.assign(tf.fill(var.shape, float(i + 1)))
    prefix = tf.train.Checkpoint(model=model).write(str(scratch / "marker"))
    reader = tf.train.load_checkpoint(prefix)
    out = {}
    for key in reader.get_variable_to_shape_map():
        if key.startswith("model/") and key.endswith("/.ATTRIBUTES/VARIABLE_VALUE"):
            value = np.asarray(reader.get_tensor(key)).reshape(-1)
            out[key.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE")] = model.variables[int(value[0]) - 1]
    if len(out) != len(model.variables):
        raise SystemExit(f"{len(out)} checkpoint paths for {len(model.variables)} variables")
    return out


def run(model, stream: bool, clip: np.ndarray, chunk: int | None = None) -> list[list[list[float]]]:
    """Logits after each chunk of `chunk` frames (one entry: the whole clip at once)."""
    import tensorflow as tf

    x = tf.constant(clip)
    if not stream:
        return [rounded(model(x, training=False).numpy())]
    states = model.init_states(tf.shape(x))
    outputs = []
    for start in range(0, clip.shape[1], chunk or clip.shape[1]):
        logits, states = model({**states, "image": x[:, start:start + (chunk or clip.shape[1])]}, training=False)
        outputs.append(rounded(logits.numpy()))
    return outputs


def rounded(array: np.ndarray) -> list:
    """7 significant digits (float32 holds about 7): keeps the fixture small."""
    return [[float(f"{v:.7g}") for v in row] for row in array.tolist()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["a0"])
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--checkpoints", type=Path, default=Path("/tmp/movinet-reference-checkpoints"))
    args = parser.parse_args()
    import tensorflow as tf

    fixture = json.loads(FIXTURE.read_text()) if FIXTURE.exists() else {}
    fixture.setdefault("models", {})
    fixture["seed"] = args.seed
    fixture["reference"] = f"TensorFlow {tf.__version__}, Model Garden official/projects/movinet"
    for model_id in args.models:
        size = RECIPE_SIZE[model_id]
        clips = {"recipe": [1, 50, size, size, 3], "odd": [2, 13, 97, 129, 3]}
        for stream in (False, True):
            name = f"{model_id}-stream" if stream else model_id
            model = build(model_id, stream)
            scratch = args.checkpoints / name
            scratch.mkdir(parents=True, exist_ok=True)
            paths = object_paths(model, scratch)
            layout = {path: list(var.shape) for path, var in sorted(paths.items())}
            values = random_variables(layout, args.seed)
            for path, var in paths.items():
                var.assign(values[path])
            tf.train.Checkpoint(model=model).write(str(scratch / "ckpt-1"))
            entry = {"layout": layout, "logits": {}}
            for i, (clip_name, shape) in enumerate(clips.items()):
                clip = random_clip(shape, args.seed + i)
                entry["logits"][clip_name] = {"shape": shape, "whole": run(model, stream, clip)[0]}
                if stream:
                    entry["logits"][clip_name]["chunks_of_8"] = run(model, stream, clip, 8)
                    if clip_name == "odd":
                        entry["logits"][clip_name]["frame_by_frame"] = run(model, stream, clip, 1)
            fixture["models"][name] = entry
            print(f"{name}: {len(layout)} variables, checkpoint {scratch / 'ckpt-1'}", flush=True)
    FIXTURE.write_text(json.dumps(fixture))
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
