"""Label segments from clip probabilities: hysteresis, cells, gaps, minimum duration, shot cuts, scores."""

import pytest
import torch

from vidtag.errors import ConfigError
from vidtag.results.record import ClipResult, Label
from vidtag.results.segments import cells, segments_from_clips, segments_from_spans

LABELS = ["dog", "cat"]


def spans(scores, *, length=1.0, **kwargs):
    """Segments of touching clips of `length` seconds; `scores` lists (dog, cat) per clip or dog alone."""
    rows = [s if isinstance(s, (tuple, list)) else (s, 0.0) for s in scores]
    starts = [i * length for i in range(len(rows))]
    return segments_from_spans(torch.tensor(rows), starts, [s + length for s in starts], LABELS, **kwargs)


def as_tuples(segments):
    return [(s.label, s.start, s.end) for s in segments]


def test_a_span_needs_one_clip_above_enter_and_lasts_while_above_stay():
    # clips 1-3 stay above 0.15 around a 0.35; clip 5 reaches 0.2 but never 0.3: no span there
    found = spans([0.1, 0.2, 0.35, 0.2, 0.1, 0.2, 0.1], enter=0.3, stay=0.15, min_duration=0, max_gap=0)
    assert as_tuples(found) == [("dog", 1.0, 4.0)]


def test_hysteresis_runs_both_ways_in_time():
    # the clip before the first strong one belongs to the span as much as the one after it
    found = spans([0.0, 0.2, 0.5, 0.0], enter=0.3, stay=0.15, min_duration=0, max_gap=0)
    assert as_tuples(found) == [("dog", 1.0, 3.0)]


def test_short_holes_are_closed_and_long_ones_are_not():
    scores = [0.4, 0.05, 0.4, 0.05, 0.05, 0.4]
    apart = spans(scores, min_duration=0, max_gap=0)
    assert as_tuples(apart) == [("dog", 0.0, 1.0), ("dog", 2.0, 3.0), ("dog", 5.0, 6.0)]
    joined = spans(scores, min_duration=0, max_gap=1.5)  # the one-second hole closes, the two-second one not
    assert as_tuples(joined) == [("dog", 0.0, 3.0), ("dog", 5.0, 6.0)]
    assert joined[0].score == pytest.approx((0.4 + 0.05 + 0.4) / 3, abs=1e-6)  # the hole's own score counts


def test_spans_shorter_than_the_minimum_duration_are_dropped():
    scores = [0.0, 0.5, 0.0, 0.5, 0.5, 0.0]
    assert as_tuples(spans(scores, length=0.5, min_duration=1.0, max_gap=0)) == [("dog", 1.5, 2.5)]
    assert len(spans(scores, length=0.5, min_duration=0.5, max_gap=0)) == 2


def test_overlapping_windows_stand_for_their_middles():
    # 1 s windows every 0.5 s: each window stands for 0.5 s around its centre; the ends reach the video's
    starts = [0.0, 0.5, 1.0, 1.5, 2.0]
    assert cells(starts, [s + 1 for s in starts], 3.0) == [
        (0.0, 0.75), (0.75, 1.25), (1.25, 1.75), (1.75, 2.25), (2.25, 3.0)]
    probs = torch.tensor([[0.0, 0], [0.5, 0], [0.5, 0], [0.0, 0], [0.0, 0]])
    found = segments_from_spans(probs, starts, [s + 1 for s in starts], LABELS, duration=3.0,
                                min_duration=0, max_gap=0)
    assert as_tuples(found) == [("dog", 0.75, 1.75)]


def test_sparse_clips_share_the_gaps_between_them():
    # two 1 s clips 4 s apart in an 8 s video: the boundary is halfway through the gap
    assert cells([1.0, 6.0], [2.0, 7.0], 8.0) == [(0.0, 4.0), (4.0, 8.0)]


def test_boundaries_snap_to_the_shot_cut_between_two_clips():
    # clips planned inside shots [0, 3.2) and [3.2, 6): the label holds in the first shot's clips only
    starts, ends = [0.5, 1.5, 3.5, 4.5], [1.5, 2.5, 4.5, 5.5]
    probs = torch.tensor([[0.6, 0.0], [0.6, 0.0], [0.0, 0.6], [0.0, 0.6]])
    plain = segments_from_spans(probs, starts, ends, LABELS, duration=6.0, min_duration=0)
    assert as_tuples(plain) == [("dog", 0.0, 3.0), ("cat", 3.0, 6.0)]  # halfway between 2.5 and 3.5
    snapped = segments_from_spans(probs, starts, ends, LABELS, duration=6.0, cuts=[3.2], min_duration=0)
    assert as_tuples(snapped) == [("dog", 0.0, 3.2), ("cat", 3.2, 6.0)]


def test_a_cut_outside_the_two_clips_centres_does_not_move_their_boundary():
    # the cut at 0.2 lies before the first clip's centre: it is no boundary between clips 0 and 1
    assert cells([0.0, 1.0], [1.0, 2.0], 2.0, cuts=[0.2]) == [(0.0, 1.0), (1.0, 2.0)]


def test_per_shot_probabilities_give_shot_aligned_spans_scored_by_duration():
    # three shots of 1, 4 and 1 s; the label holds in the first two: their mean weighs the long one more
    probs = torch.tensor([[0.9, 0.0], [0.4, 0.0], [0.0, 0.0]])
    found = segments_from_spans(probs, [0.0, 1.0, 5.0], [1.0, 5.0, 6.0], LABELS, cuts=[1.0, 5.0])
    assert as_tuples(found) == [("dog", 0.0, 5.0)]
    assert found[0].score == pytest.approx((0.9 * 1 + 0.4 * 4) / 5, abs=1e-6)


def test_segments_come_in_time_order_across_labels():
    found = spans([(0.0, 0.5), (0.0, 0.5), (0.5, 0.0), (0.5, 0.0)], min_duration=0)
    assert as_tuples(found) == [("cat", 0.0, 2.0), ("dog", 2.0, 4.0)]


def test_from_ranked_clip_labels_matches_full_probabilities():
    # a record's top-2 clip labels hold every score above `stay`: the same segments as from the tensor
    rows = [(0.1, 0.6), (0.5, 0.2), (0.5, 0.05), (0.05, 0.02)]
    clips = [ClipResult(float(i), i + 1.0, sorted((Label(n, s) for n, s in zip(LABELS, row)),
                                                  key=lambda x: -x.score)[:2]) for i, row in enumerate(rows)]
    from_clips = segments_from_clips(clips, duration=4.0, min_duration=0)
    assert from_clips == spans(rows, min_duration=0, duration=4.0)
    assert as_tuples(from_clips) == [("cat", 0.0, 2.0), ("dog", 1.0, 3.0)]


def test_shots_of_a_record_give_the_cuts():
    clips = [ClipResult(0.2, 0.8, [Label("dog", 0.9)]), ClipResult(1.2, 1.8, [Label("dog", 0.1)])]
    shots = [ClipResult(0.0, 1.1, []), ClipResult(1.1, 2.0, [])]
    assert as_tuples(segments_from_clips(clips, duration=2.0, shots=shots, min_duration=0)) == [("dog", 0.0, 1.1)]


def test_bad_parameters_are_usage_errors():
    with pytest.raises(ConfigError, match="stay <= enter"):
        spans([0.5], enter=0.2, stay=0.3)
    with pytest.raises(ConfigError, match="zero or more"):
        spans([0.5], min_duration=-1)
    with pytest.raises(ValueError, match="clips x labels"):
        segments_from_spans(torch.zeros(2, 3), [0, 1], [1, 2], LABELS)


def test_no_clips_no_segments():
    assert segments_from_spans(torch.zeros(0, 2), [], [], LABELS) == []
    assert segments_from_clips([], duration=3.0) == []
