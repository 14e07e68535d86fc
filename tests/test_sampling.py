"""Clip planning: uniform spread over the whole video, windows that reach the end, stride recipes."""

import pytest


def flat(spans):
    return [x for span in spans for x in span]

from vidtag.errors import ConfigError
from vidtag.media.sampling import plan_clips, segments
from vidtag.run.settings import Settings


def test_clips_cover_the_whole_video_evenly():
    clips = plan_clips(10.0, 4, clips=5)
    assert flat((c.start, c.end) for c in clips) == pytest.approx([0, 2, 2, 4, 4, 6, 6, 8, 8, 10])
    times = [t for c in clips for t in c.times]
    assert times == sorted(times)
    # uniform sampling: frame times at the centres of equal sub-intervals, not the first N frames
    assert clips[0].times == pytest.approx((0.25, 0.75, 1.25, 1.75))
    assert times[-1] == pytest.approx(9.75)


def test_windows_slide_and_the_last_one_ends_with_the_video():
    spans = segments(10.0, window=4, stride=3)
    assert flat(spans) == pytest.approx([0, 4, 3, 7, 6, 10])
    assert flat(segments(11.0, window=4, stride=4)) == pytest.approx([0, 4, 4, 8, 7, 11])
    assert flat(segments(2.0, window=4)) == pytest.approx([0, 2])  # shorter than one window


def test_stride_recipe_centres_the_clip_and_clamps_to_the_video():
    # X3D-M style: 16 frames, every 5th frame at 30 fps = 2.67 s around the segment centre
    clip = plan_clips(10.0, 16, clips=1, frame_stride=5, fps=30)[0]
    steps = [b - a for a, b in zip(clip.times, clip.times[1:])]
    assert steps == pytest.approx([5 / 30] * 15)
    assert (clip.start + clip.end) / 2 == pytest.approx(5.0)
    assert clip.end - clip.start == pytest.approx(16 * 5 / 30)
    short = plan_clips(1.0, 16, clips=1, frame_stride=5, fps=30)[0]
    assert 0 <= min(short.times) and max(short.times) < 1.0
    assert 0.0 <= short.start < short.end <= 1.0


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"window": 2, "stride": -1}, {"clips": 0}])
def test_bad_values_are_usage_errors(kwargs):
    # checked once, with the run's settings, before any file is planned
    with pytest.raises(ConfigError):
        Settings(**kwargs)
