"""Make the labelled footage set: real photos that PyPI packages ship, panned and zoomed into short H.264 videos.

    pip install --no-deps --target /tmp/footage-src scikit-image==0.26.0 matplotlib==3.11.2 scikit-learn==1.9.1
    PYTHONPATH=/tmp/footage-src python scripts/make_footage.py

writes benchmarks/footage/*.mp4 (400x300, 3 s, 25 fps) and the small test copies tests/data/footage/*.mp4
(160x120, 2 s, 12 fps). The photos are read as files from the installed packages (nothing is imported
from them and nothing is downloaded: all of them are inside the wheels); each file's SHA-256 is checked,
so another package version that changed a photo stops the script instead of silently changing the set.
The motion is a fixed function of the frame number (no randomness) and x264 runs on one thread, so the
same Pillow, PyAV and libx264 give the same bytes. The truth (benchmarks/footage/truth.csv) is written by
hand; this script does not touch it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Photo:
    name: str  # the video's file name, without .mp4
    package: str  # import name of the package that ships the photo
    file: str  # path inside the package
    sha256: str
    licence: str
    focus: tuple[float, float]  # where the zoom ends, as fractions of the width and height
    zoom: float  # how far the window closes in on `focus` (1.0: no zoom, a pan only)


# fmt: off
PHOTOS = [
    Photo("astronaut", "skimage", "data/astronaut.png",
          "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
          "public domain (NASA; Eileen Collins)", (0.35, 0.35), 1.4),
    Photo("cameraman", "skimage", "data/camera.png",
          "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
          "CC0 (Lav Varshney)", (0.45, 0.35), 1.3),
    Photo("chelsea", "skimage", "data/chelsea.png",
          "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
          "CC0 (Stefan van der Walt)", (0.5, 0.45), 1.3),
    Photo("coffee", "skimage", "data/coffee.png",
          "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
          "CC0 (Rachel Michetti)", (0.55, 0.4), 1.3),
    Photo("rocket", "skimage", "data/rocket.jpg",
          "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
          "public domain (SpaceX)", (0.5, 0.5), 1.5),
    Photo("hubble", "skimage", "data/hubble_deep_field.jpg",
          "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
          "public domain (NASA, Hubble eXtreme Deep Field)", (0.4, 0.6), 1.6),
    Photo("horse", "skimage", "data/horse.png",
          "c7fb60789fe394c485f842291ea3b21e50d140f39d6dcb5fb9917cc178225455",
          "CC0 (Andreas Preuss, openclipart)", (0.5, 0.5), 1.15),
    Photo("chalk_text", "skimage", "data/text.png",
          "bd84aa3a6e3c9887850d45d606c96b2e59433fbef50338570b63c319e668e6d1",
          "public domain (Wikipedia File:Corner.png)", (0.3, 0.5), 1.5),
    Photo("coins", "skimage", "data/coins.png",
          "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
          "no known copyright restrictions (Brooklyn Museum)", (0.6, 0.5), 1.4),
    Photo("brick", "skimage", "data/brick.png",
          "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
          "CC0 (CC0Textures)", (0.5, 0.5), 1.3),
    Photo("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
          "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
          "public domain (US Navy photograph)", (0.5, 0.35), 1.4),
    Photo("matplotlib_logo", "matplotlib", "mpl-data/sample_data/logo2.png",
          "0d7371e055decaac47cb6e809af3442e9c1ecd02f1c1e2d063d1cfee4b4a21d7",
          "Matplotlib licence (PSF-based, BSD-compatible)", (0.3, 0.5), 1.8),
    Photo("temple", "sklearn", "datasets/images/china.jpg",
          "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29",
          "CC BY 2.0 (danielbuechele, Flickr)", (0.4, 0.45), 1.4),
    Photo("flower", "sklearn", "datasets/images/flower.jpg",
          "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638",
          "CC BY 2.0 (vultilion, Flickr)", (0.5, 0.4), 1.3),
]
# fmt: on

# (folder, width, height, seconds, fps, crf, photos): the benchmark set and the tests' small copies
SETS = [
    ("benchmarks/footage", 400, 300, 3.0, 25, 26, None),
    ("tests/data/footage", 160, 120, 2.0, 12, 26, ("chelsea", "coffee", "rocket", "astronaut")),
]


def photo_path(photo: Photo) -> Path:
    """The photo inside its installed package, its digest checked."""
    spec = importlib.util.find_spec(photo.package)  # finds without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{photo.package} is not installed: see this script's docstring")
    path = Path(next(iter(spec.submodule_search_locations))) / photo.file
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != photo.sha256:
        raise SystemExit(f"{path}: SHA-256 {digest} is not the pinned {photo.sha256} (another package version?)")
    return path


def canvas(path: Path, aspect: float) -> Image.Image:
    """The photo as RGB (transparency over white), padded to the video's aspect with its border's colour."""
    image = Image.open(path)
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    image = image.convert("RGB")
    w, h = image.size
    width, height = (w, round(w / aspect)) if w / h > aspect else (round(h * aspect), h)
    if (width, height) == (w, h):
        return image
    pixels = np.asarray(image)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    out = Image.new("RGB", (width, height), tuple(int(v) for v in np.median(border, axis=0)))
    out.paste(image, ((width - w) // 2, (height - h) // 2))
    return out


def window(size: tuple[int, int], photo: Photo, t: float) -> tuple[float, float, float, float]:
    """The part of the canvas shown at time t in [0, 1]: the whole canvas, closing in on the focus.

    Eased (smoothstep) so the motion starts and stops gently, as a camera move would.
    """
    w, h = size
    s = t * t * (3 - 2 * t)
    scale = 1 + (1 / photo.zoom - 1) * s
    ww, wh = w * scale, h * scale
    cx = w / 2 + (photo.focus[0] * w - w / 2) * s
    cy = h / 2 + (photo.focus[1] * h - h / 2) * s
    x0 = min(max(cx - ww / 2, 0.0), w - ww)
    y0 = min(max(cy - wh / 2, 0.0), h - wh)
    return (x0, y0, x0 + ww, y0 + wh)


def write_video(photo: Photo, out: Path, width: int, height: int, seconds: float, fps: int, crf: int) -> None:
    image = canvas(photo_path(photo), width / height)
    frames = round(seconds * fps)
    with av.open(str(out), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.thread_count = 1  # one thread: x264's output then depends on nothing but its input
        stream.options = {"crf": str(crf), "preset": "slow", "tune": "film"}
        for i in range(frames):
            box = window(image.size, photo, i / (frames - 1))
            pixels = np.asarray(image.resize((width, height), Image.Resampling.BICUBIC, box=box))
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="photo names to make (default: all)")
    args = parser.parse_args()
    by_name = {p.name: p for p in PHOTOS}
    for folder, width, height, seconds, fps, crf, names in SETS:
        target = ROOT / folder
        target.mkdir(parents=True, exist_ok=True)
        for name in names or by_name:
            if args.only and name not in args.only:
                continue
            out = target / f"{name}.mp4"
            write_video(by_name[name], out, width, height, seconds, fps, crf)
            print(f"{out.relative_to(ROOT)}: {out.stat().st_size / 1024:.0f} KB  ({by_name[name].licence})")


if __name__ == "__main__":
    main()
