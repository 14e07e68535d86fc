"""A video spliced from real footage at known frames, for shot-boundary tests and benchmarks.

The footage is the repository's own `examples/` clips (bikes.mp4: street scenes, itself cut into shots
at its frames 30, 76, 137, 187 and 242; bigbuckbunny.mp4: one shot of an animation, (c) Blender
Foundation, CC BY 3.0; see examples/README.md), each piece taken from inside one of their shots:

    frames   0- 39  bikes 30-69
    frames  40- 84  bunny 0-44           hard cut at 40
    frames  85- 97  bikes 80-92          hard cut at 85: a 13-frame shot
    frames  98-127  bunny 50-79          hard cut at 98, 13 frames after the one before
    frames 128-139  dissolve, bunny 80-91 -> bikes 140-151 (12 mixed frames)
    frames 140-173  bikes 152-185

Encoded with H.264 either with a keyframe forced at each cut (and the dissolve's start), or with a fixed
GOP and x264's scene-cut detection off, so that the container says nothing about where the cuts are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FPS = 25


@dataclass(frozen=True)
class Piece:
    """`count` frames of `source` from `first`; with `fade_to`, mixed into that source's frames from
    `fade_first` over the piece (a dissolve)."""

    source: str
    first: int
    count: int
    fade_to: str | None = None
    fade_first: int = 0


PIECES = (
    Piece("bikes", 30, 40),
    Piece("bunny", 0, 45),
    Piece("bikes", 80, 13),
    Piece("bunny", 50, 30),
    Piece("bunny", 80, 12, fade_to="bikes", fade_first=140),
    Piece("bikes", 152, 34),
)
CUTS = (40, 85, 98)  # first frames of the shots after each hard cut
DISSOLVE = (128, 139)  # first and last mixed frames
FRAMES = sum(p.count for p in PIECES)


def _read(name: str, width: int, height: int) -> list[np.ndarray]:
    path = EXAMPLES / ("bikes.mp4" if name == "bikes" else "bigbuckbunny.mp4")
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24", width=width, height=height) for f in container.decode(video=0)]


def spliced_frames(width: int = 320, height: int = 180) -> list[np.ndarray]:
    """The spliced video's frames, RGB uint8, at the given size (the sources are scaled to it)."""
    sources = {name: _read(name, width, height) for name in ("bikes", "bunny")}
    out = []
    for piece in PIECES:
        for k in range(piece.count):
            frame = sources[piece.source][piece.first + k]
            if piece.fade_to is not None:
                alpha = (k + 1) / (piece.count + 1)
                other = sources[piece.fade_to][piece.fade_first + k].astype(np.float32)
                frame = np.round((1 - alpha) * frame.astype(np.float32) + alpha * other).astype(np.uint8)
            out.append(frame)
    return out


def write_spliced(path: Path | str, *, keyframes_at_cuts: bool, gop: int = 50, width: int = 320,
                  height: int = 180, frames: list[np.ndarray] | None = None, repeat: int = 1) -> Path:
    """Encode the spliced video (H.264, 25 fps). `keyframes_at_cuts`: a keyframe forced at every cut and at
    the dissolve's start, no others; else a keyframe every `gop` frames and none at the cuts (x264's
    scene-cut detection off). `repeat` plays the cut list that many times over (for long benchmarks)."""
    path = Path(path)
    frames = frames if frames is not None else spliced_frames(width, height)
    forced = {0, *CUTS, DISSOLVE[0]}
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if keyframes_at_cuts:  # only the forced keyframes: no periodic ones, no scene-cut ones
            params = "keyint=infinite:scenecut=0:forced-idr=1"
        else:
            params = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        stream.options = {"x264-params": params, "preset": "veryfast", "crf": "20"}
        for r in range(repeat):
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                if keyframes_at_cuts and i in forced:
                    frame.pict_type = av.video.frame.PictureType.I
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
