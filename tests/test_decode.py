"""Decoding: the right frame at each time, sparse seeking, timestamps from pts, rotation, fallbacks."""

from fractions import Fraction

import av
import numpy as np
import pytest

from media import index_of, make_video
from vidtag.media.decode import FrameReader, open_video, read_video
from vidtag.errors import MediaError
from vidtag.media.clips import InputSpec, prepare
from vidtag.media.probe import probe


def read(path, times):
    info, frames, reader = read_video(path, lambda info: times)
    return info, [index_of(frames[t]) for t in times], reader


def test_frames_at_known_timestamps(tmp_path):
    path = make_video(tmp_path / "a.mp4", frames=30, fps=10)
    info, indices, _ = read(path, [0.0, 0.05, 0.1, 1.04, 2.95])
    assert info.duration == pytest.approx(3.0)
    assert info.fps == pytest.approx(10)
    assert indices == [0, 0, 1, 10, 29]


def test_long_gop_is_read_by_seeking_not_by_decoding_everything(tmp_path):
    # 40 s at 25 fps with a keyframe every 250 frames (10 s): reading one frame near the end of each
    # GOP must seek to that GOP's keyframe instead of decoding the whole file
    path = make_video(tmp_path / "gop.mp4", frames=1000, fps=25, gop=250, width=32, height=32)
    times = [12.0, 22.0, 32.0]
    with open_video(path) as container:
        info = probe(container)
        assert info.keyframes == pytest.approx([0.0, 10.0, 20.0, 30.0], abs=0.1)
        reader = FrameReader(container, info)
        got = [index_of(np.asarray(reader.frame_at(t).to_ndarray(format="rgb24"))) for t in times]
    assert got == [round(t * 25) % 32 for t in times]
    assert reader.seeks == 3
    assert reader.decoded < 3 * 60  # ~51 frames from each keyframe, not 800


def test_nearby_times_decode_forward_without_seeking(tmp_path):
    path = make_video(tmp_path / "near.mp4", frames=100, fps=25, gop=250)
    _, indices, reader = read(path, [0.5, 1.0, 1.5, 2.0])
    assert indices == [int(t * 25 + 1e-9) % 32 for t in (0.5, 1.0, 1.5, 2.0)]
    assert reader.seeks == 0  # no keyframe between: decoding on is cheaper than seeking back


def test_variable_frame_rate_uses_presentation_timestamps(tmp_path):
    pts = [0, 1, 2, 5, 6, 10, 20, 21, 22, 30]
    path = make_video(tmp_path / "vfr.mkv", frames=10, pts=pts, time_base=Fraction(1, 10))
    _, indices, _ = read(path, [0.15, 0.45, 0.55, 1.5, 2.15, 2.9])
    # the frame shown at t is the last one with pts <= t
    assert indices == [1, 2, 3, 5, 7, 8]


def test_nonzero_start_time_is_subtracted(tmp_path):
    pts = [100 + i for i in range(20)]
    path = make_video(tmp_path / "late.mkv", frames=20, pts=pts, time_base=Fraction(1, 10))
    info, indices, _ = read(path, [0.0, 0.55, 1.95])
    assert info.start == pytest.approx(10.0)
    assert info.duration == pytest.approx(2.0, abs=0.11)
    assert indices == [0, 5, 19]


@pytest.mark.parametrize("rotation,expected_shape", [(90, (64, 48)), (180, (48, 64)), (270, (64, 48))])
def test_rotation_metadata_is_applied(tmp_path, rotation, expected_shape):
    path = make_video(tmp_path / f"rot{rotation}.mp4", frames=5, width=64, height=48, rotation=rotation)
    _, frames, reader = read_video(path, lambda info: [0.0])
    image = frames[0.0]
    assert reader.rotation == rotation
    assert image.shape[:2] == expected_shape
    # the marker drawn in the top-left corner moves where the display matrix says
    corner = {90: image[-8:, :8], 180: image[-8:, -8:], 270: image[:8, -8:]}[rotation]
    assert corner.mean() > 200


def test_unknown_frame_count_and_duration_fall_back_to_packets(tmp_path):
    # a raw H.264 elementary stream: the container knows neither duration nor frame count
    path = make_video(tmp_path / "raw.h264", frames=40, fps=20, codec="libx264")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert not stream.frames
    with open_video(path) as container:
        info = probe(container)
    assert info.frames in (40, None) or info.frames == pytest.approx(40, abs=1)
    assert info.duration > 0
    inputs = InputSpec(frames=2, frame_stride=None, fps=30, clips=2, window=None, stride=None, crops=1,
                    resize=32, crop=32, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bilinear")
    prepared = prepare(str(path), inputs)
    assert prepared.tensor.shape == (2, 2, 3, 32, 32)
    assert all(0 <= c.start < c.end <= info.duration + 1e-6 for c in prepared.clips)


def test_prepare_samples_across_the_whole_video(tmp_path):
    path = make_video(tmp_path / "whole.mp4", frames=36, fps=12, gop=250)
    inputs = InputSpec(frames=2, frame_stride=None, fps=30, clips=3, window=None, stride=None, crops=1,
                    resize=48, crop=48, mean=(0.0,) * 3, std=(1.0,) * 3, interpolation="bilinear")
    prepared = prepare(str(path), inputs)
    # 3 s: clips [0,1], [1,2], [2,3]; frames at 0.25/0.75 s of each -> indices 3, 9, 15, 21, 27, 33
    values = prepared.tensor[:, :, :, 24:, 24:].mean(dim=(2, 3, 4)).flatten() * 255
    assert [round(float(v) / 8) % 32 for v in values] == [3, 9, 15, 21, 27, 33 % 32]


def test_not_a_video_is_a_media_error(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 20)
    with pytest.raises(MediaError, match="not a readable video|FFmpeg"):
        read_video(bad, lambda info: [0.0])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        read_video(empty, lambda info: [0.0])
