"""Hostile inputs: checkpoints that would run code, YAML that would build objects, names made to escape.

Each payload is live (a control shows it does run when loaded unsafely); vidtag must refuse it before
anything runs, with the documented exit status.
"""

from __future__ import annotations

import csv
import json
import pickle
import re
from pathlib import Path

import av
import pytest
import torch
from typer.testing import CliRunner

from _reliability_helpers import cpu_model, one_torch_thread
from media import make_video
from vidtag import load_model
from vidtag._cli.app import app
from vidtag.models.checkpoint import load_state_dict
from vidtag.errors import ConfigError, FatalError
from vidtag.models.registry import load_registry

VIDTAG = Path(__file__).resolve().parents[1] / "vidtag"


class Payload:
    """Unpickling this calls open(marker, 'w'): a file appears if the pickle's code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def hostile_checkpoint(path: Path, marker: Path, how: str) -> Path:
    weights = {"_fc.weight": torch.zeros(2, 2), "hook": Payload(marker)}
    if how == "torch.save":
        torch.save(weights, path)
    else:  # a bare pickle with the newest protocol
        path.write_bytes(pickle.dumps(weights, protocol=pickle.HIGHEST_PROTOCOL))
    return path


@pytest.mark.parametrize("name,how", [("evil.pth", "torch.save"), ("evil.pt", "pickle"), ("evil.bin", "torch.save")])
def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, name, how):
    control = hostile_checkpoint(tmp_path / f"control-{name}", tmp_path / "control-ran", how)
    if how == "pickle":  # the payload is live: loading unsafely runs it
        pickle.loads(control.read_bytes())
    else:
        torch.load(control, weights_only=False)
    assert (tmp_path / "control-ran").exists()

    marker = tmp_path / "payload-ran"
    evil = hostile_checkpoint(tmp_path / name, marker, how)
    with pytest.raises(FatalError, match=r"refused to load the checkpoint|safe loader does not accept it"):
        load_model(weights=str(evil), device="cpu")
    assert not marker.exists()


def test_through_the_command_line_a_hostile_checkpoint_is_exit_3_and_nothing_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    evil = hostile_checkpoint(tmp_path / "evil.pth", marker, "torch.save")
    video = make_video(tmp_path / "v.mp4", frames=5)
    output = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["classify", str(video), "--weights", str(evil), "-o", str(output)])
    assert result.exit_code == 3
    assert re.match(r"vidtag: error: refused to load the checkpoint .*evil\.pth: it holds Python code references",
                    result.stderr)
    assert "Traceback" not in result.stderr
    assert not marker.exists() and not output.exists()


def test_safetensors_and_plain_state_dicts_load(tmp_path):
    from safetensors.torch import save_file

    reference = cpu_model()
    state = load_state_dict(_default_weights_path())
    safe = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(safe))
    plain = tmp_path / "lite0.pth"
    torch.save(state, plain)
    clip = torch.rand(1, 2, 3, 224, 224) * 2 - 1
    with one_torch_thread():
        want = reference.predict(clip).probs
        for weights in (safe, plain):
            got = load_model(weights=str(weights), device="cpu", precision="fp32").predict(clip).probs
            assert torch.equal(got, want), weights


def _default_weights_path() -> Path:
    from vidtag.models.weights import require_weights

    return require_weights(cpu_model().spec.weights, "efficientnet-lite0")


def test_damaged_checkpoints_are_fatal_in_plain_words(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not weights\n")
    with pytest.raises(FatalError, match="it is damaged, not a PyTorch checkpoint"):
        load_state_dict(text)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(FatalError, match="cannot read the safetensors checkpoint"):
        load_state_dict(bad)


YAML_PAYLOADS = {
    "apply": "models:\n  evil: !!python/object/apply:builtins.open ['{marker}', 'w']\n",
    "new": "models:\n  evil: !!python/object/new:builtins.open ['{marker}', 'w']\n",
    "name": "models: !!python/name:os.system\n",
}


@pytest.mark.parametrize("kind", sorted(YAML_PAYLOADS))
def test_a_registry_file_with_python_tags_is_refused(tmp_path, kind):
    import yaml

    marker = tmp_path / "payload-ran"
    registry = tmp_path / "models.yaml"
    registry.write_text(YAML_PAYLOADS[kind].format(marker=marker))
    if kind != "name":  # the payload is live: the unsafe loader runs it
        yaml.unsafe_load(registry.read_text())
        assert marker.exists()
        marker.unlink()
    with pytest.raises(ConfigError, match=r"models\.yaml: not valid YAML: could not determine a constructor"):
        load_registry([str(registry)])
    assert not marker.exists()
    video = make_video(tmp_path / "v.mp4", frames=5)
    result = CliRunner().invoke(app, ["classify", str(video), "--registry", str(registry)])
    assert result.exit_code == 2 and result.stderr.startswith("vidtag: error: ")
    assert not marker.exists()


def unsafe_calls(text: str) -> list[str]:
    """Loader calls that could run code from a file, and remote code switched on by default."""
    found = [call.group(0) for call in re.finditer(r"torch\.load\((?:[^()]|\([^()]*\))*\)", text)
             if not re.search(r"weights_only\s*=\s*True", call.group(0))]
    for pattern in (r"yaml\.load\(", r"yaml\.unsafe_load", r"yaml\.full_load", r"\bpickle\.loads?\(",
                    r"trust_remote_code\s*=\s*True", r"(?<![\w.])eval\(", r"(?<![\w.])exec\("):
        found += [m.group(0) for m in re.finditer(pattern, text)]
    return found


def test_the_source_never_loads_unsafely():
    """A guard for every present and future module: no unsafe loaders, no remote code by default."""
    sample = ('torch.load(path,\n    map_location="cpu")\nyaml.load(text)\nfrom_pretrained(x, trust_remote_code=True)\n'
              'torch.load(p, map_location=dev(), weights_only=True)\n')
    assert unsafe_calls(sample) == ['torch.load(path,\n    map_location="cpu")', "yaml.load(",
                                    "trust_remote_code=True"]
    offences = {path.name: unsafe_calls(path.read_text(encoding="utf-8")) for path in sorted(VIDTAG.rglob("*.py"))}
    # the Ray engine pickles vidtag's own results between its own stages (Ray pickles task data anyway);
    # nothing read from a file or the network goes through it
    offences["ray_engine.py"] = [c for c in offences.get("ray_engine.py", []) if c != "pickle.loads("]
    # so do the local engine's decoding workers, over private pipes to their own parent process
    offences["workers.py"] = [c for c in offences.get("workers.py", []) if c != "pickle.loads("]
    assert {name: calls for name, calls in offences.items() if calls} == {}
    assert "weights_only=True" in (VIDTAG / "models" / "checkpoint.py").read_text()


def test_output_paths_come_from_the_command_line_never_from_file_contents(tmp_path):
    """Names and metadata made to escape: only the named output file appears, and names round-trip."""
    folder = tmp_path / "in"
    folder.mkdir()
    names = ['quote " and, comma.mp4', "new\nline.mp4", "up..%2F..%2Fescape.mp4", "-o.mp4", "rtl \u202e4pm.exe.mp4"]
    for name in names:
        make_video(folder / name, frames=5)
    titled = folder / "titled.mp4"
    with av.open(str(titled), "w") as container:  # metadata that names a path
        container.metadata["title"] = "../../pwned.jsonl"
        container.metadata["comment"] = "/tmp/pwned"
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(torch.full((48, 64, 3), i * 40, dtype=torch.uint8).numpy(),
                                               format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    before = {p for p in tmp_path.rglob("*")}
    out_csv, out_jsonl = tmp_path / "out" / "tags.csv", tmp_path / "out" / "tags.jsonl"
    with one_torch_thread():
        for output in (out_csv, out_jsonl):
            result = CliRunner().invoke(app, ["classify", str(folder), "-o", str(output), "--clips", "1", "-q"])
            assert result.exit_code == 0, result.stderr
    after = {p for p in tmp_path.rglob("*")}
    assert after - before == {tmp_path / "out", out_csv, out_jsonl}
    expected = sorted(str(folder / n) for n in names + ["titled.mp4"])
    with open(out_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted({row["path"] for row in rows}) == expected
    records = [json.loads(line) for line in out_jsonl.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["path"] for r in records) == expected
