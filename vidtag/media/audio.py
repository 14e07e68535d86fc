"""Audio: the sound tracks of a video file, decoded in windows for the audio models.

`probe_audio` lists a file's audio tracks. `audio_windows` decodes one of them (the first unless the user
picks another, as `--audio-track N` does) with PyAV, resamples it with FFmpeg's resampler
(`av.AudioResampler`) to the model's rate, averages the channels to mono, and yields fixed windows with
their times on the video's timeline: seconds from the first video frame, the same origin as the picture
clips, whatever the audio stream's own start time (audio that starts late is preceded by silence; audio
before the first frame is dropped). Decoding streams: only the current window and one decoded frame are
held, so memory does not grow with the file's length.

Channels are averaged after resampling (resampling is linear, so this equals resampling the average):
the plain mean most audio models were trained on (librosa's `to_mono`, torchaudio's mean over channels),
rather than FFmpeg's downmix, which sums stereo at -3 dB and can exceed full scale.

What can go wrong is said in plain words: a file without sound, a track number out of range or a codec
FFmpeg cannot decode raise a MediaError (the video keeps its picture tags; the pipeline turns the error
into a note), and packets that do not decode are skipped, their time filled with silence and counted in
a note (`AudioWindows.notes`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.audio.frame import format_dtypes

from ..errors import ConfigError, MediaError
from .decode import open_video

# a timestamp jump larger than this between decoded frames is a gap in the sound, filled with silence
_GAP_S = 0.02
# decoded samples gathered before each call to the resampler: a call costs ~0.2 ms whatever its length, so
# resampling codec-sized frames (1024 samples) one by one took 5x longer than decoding them
RESAMPLE_BATCH = 16384


@dataclass(frozen=True)
class AudioTrack:
    """One audio track of a file. `index` counts audio tracks only (what `--audio-track N` names)."""

    index: int
    stream_index: int  # the stream's index in the container (all kinds of streams counted)
    codec: str
    sample_rate: int
    channels: int
    start: float  # seconds, the track's first sample on the file's own clock
    duration: float | None  # seconds, when the container says
    language: str | None
    marked_default: bool  # the container flags it as the default track (vidtag reads track 0 unless told)


@dataclass(frozen=True)
class AudioInfo:
    """A file's audio tracks and the origin of the video's timeline (seconds on the file's clock)."""

    tracks: tuple[AudioTrack, ...]
    origin: float

    def track(self, index: int = 0) -> AudioTrack:
        """Track `index`, or a MediaError saying the file has no sound or how many tracks it has."""
        if not self.tracks:
            raise MediaError("the file has no audio track: no sound to tag")
        if not isinstance(index, int) or not 0 <= index < len(self.tracks):
            count = len(self.tracks)
            numbers = "0" if count == 1 else f"0 to {count - 1}"
            raise MediaError(f"audio track {index} does not exist: the file has {count} audio "
                             f"track{'s' if count > 1 else ''} (numbered {numbers})")
        return self.tracks[index]


@dataclass(frozen=True)
class AudioWindow:
    """Mono float32 samples at the model's rate, and their span on the video's timeline in seconds."""

    start: float
    end: float
    samples: np.ndarray


def _seconds(value: int | None, time_base) -> float | None:
    return None if value is None or time_base is None else float(value * time_base)


def _origin(container: av.container.InputContainer) -> float:
    """The time of the first video frame (the records' zero), else the container's start, else 0."""
    pictures = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
    if pictures:
        start = _seconds(pictures[0].start_time, pictures[0].time_base)
        if start is not None:
            return start
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def _tracks(container: av.container.InputContainer) -> tuple[AudioTrack, ...]:
    tracks = []
    for i, stream in enumerate(container.streams.audio):
        ctx = stream.codec_context
        tracks.append(AudioTrack(
            index=i,
            stream_index=stream.index,
            codec=ctx.name or "unknown",
            sample_rate=int(ctx.sample_rate or stream.sample_rate or 0),
            channels=int(ctx.channels or 0),
            start=_seconds(stream.start_time, stream.time_base) or 0.0,
            duration=_seconds(stream.duration, stream.time_base),
            language=stream.metadata.get("language"),
            marked_default=bool(stream.disposition & av.stream.Disposition.default),
        ))
    return tuple(tracks)


def _planes(frame: av.AudioFrame) -> list[np.ndarray]:
    """A decoded frame's samples, one array per plane (per channel when planar, else one interleaved),
    read in place: `to_ndarray` costs 50 us a frame, more than decoding it."""
    dtype = format_dtypes.get(frame.format.name)
    if dtype is None:  # a sample format numpy views do not cover (64-bit integers): PyAV converts it
        return list(frame.to_ndarray())
    count = frame.samples * (1 if frame.format.is_planar else len(frame.layout.channels))
    return [np.frombuffer(plane, dtype, count) for plane in frame.planes]


def probe_audio(path: str | Path) -> AudioInfo:
    """The audio tracks of a media file (an empty tuple when it has none) and its timeline's origin."""
    with open_video(path) as container:
        return AudioInfo(tracks=_tracks(container), origin=_origin(container))


class AudioWindows:
    """Iterable over the windows of one audio track (see `audio_windows`), decoded as they are asked for.

    While iterating, `notes` collects what was wrong with the sound (damaged packets skipped), and
    `peak_samples` the most samples held at once (the window being filled plus one resampled batch:
    bounded by the window, not by the file's length).
    """

    def __init__(self, path: str | Path, rate: int, window_s: float, hop_s: float | None = None,
                 track: int = 0, origin: float | None = None):
        if rate <= 0 or not window_s > 0 or (hop_s is not None and not hop_s > 0):
            raise ConfigError(f"audio windows need a positive rate, window and hop (got {rate} Hz, "
                              f"window {window_s} s, hop {hop_s} s)")
        self.path, self.rate, self.track_index = Path(path), int(rate), track
        self.window = max(1, round(window_s * rate))  # samples per window
        self.hop = max(1, round((hop_s or window_s) * rate))
        self.origin = origin
        self.notes: list[str] = []
        self.peak_samples = 0
        self.decoded_s = 0.0  # seconds of sound decoded so far (from the track's start)
        self.track: AudioTrack | None = None

    def __iter__(self) -> Iterator[AudioWindow]:
        with open_video(self.path) as container:
            origin = _origin(container) if self.origin is None else self.origin
            info = AudioInfo(_tracks(container), origin)
            self.track = info.track(self.track_index)
            stream = container.streams.audio[self.track.index]
            if stream.codec_context is None or not stream.codec_context.name:
                raise MediaError(f"audio track {self.track.index} uses a codec this FFmpeg cannot decode")
            yield from self._windows(container, stream, origin)

    # -- decoding --------------------------------------------------------------------------------
    def _chunks(self, container, stream, origin: float) -> Iterator[np.ndarray]:
        """Mono float32 samples at `rate`, from the video's time 0 on (silence before the sound starts).

        Decoded frames are gathered into batches of RESAMPLE_BATCH samples of one format; a gap in the
        timestamps (undecodable packets, or a track with holes) is filled with silence, so later sound keeps
        its time."""
        resampler = kind = None  # the resampler, and the (format, layout, rate) it was set up for
        batch: list[list[np.ndarray]] = []  # decoded frames' planes (see _planes), not yet resampled
        batched = 0
        drop = 0  # output samples still to drop (sound before the first video frame)
        expected = None  # the file-clock time the next decoded frame should start at
        damaged, after_damage, lost = 0, False, 0.0  # undecodable packets; one since the last frame; their seconds

        def resampled(final: bool = False) -> Iterator[np.ndarray]:
            nonlocal drop, batched
            frames = []
            if batch:
                planes = np.stack([np.concatenate(plane) for plane in zip(*batch)])
                frame = av.AudioFrame.from_ndarray(planes, format=kind[0], layout=kind[1])
                frame.sample_rate = kind[2]
                frames = resampler.resample(frame)
                batch.clear()
                batched = 0
            if final:
                frames = [*frames, *resampler.resample(None)]
            for out in frames:
                samples = out.to_ndarray().mean(0, dtype=np.float32)
                cut = min(drop, len(samples))
                drop -= cut
                if len(samples) > cut:
                    yield samples[cut:]

        for frame in self._frames(container, stream):
            if frame is None:
                damaged, after_damage = damaged + 1, True
                continue
            this = (frame.format.name, frame.layout.name, frame.sample_rate)
            if expected is None:
                expected = frame.time if frame.time is not None else self.track.start
                lead = round((expected - origin) * self.rate)
                if lead > 0:
                    yield np.zeros(lead, np.float32)
                drop = max(0, -lead)
            if this != kind:  # the first frame, or the stream changed its format midway: a new resampler
                if resampler is not None:
                    yield from resampled(final=True)
                resampler, kind = av.AudioResampler(format="fltp", layout=this[1], rate=self.rate), this
            planes = _planes(frame)
            if frame.time is not None and frame.time > expected + _GAP_S:
                gap = frame.time - expected
                lost += gap if after_damage else 0.0
                size = round(gap * frame.sample_rate) * (len(planes[0]) // frame.samples)
                batch.append([np.zeros(size, planes[0].dtype)] * len(planes))
            after_damage = False
            batch.append(planes)
            batched += frame.samples
            expected = (frame.time if frame.time is not None else expected) + frame.samples / frame.sample_rate
            self.decoded_s = expected - self.track.start
            if batched >= RESAMPLE_BATCH:
                yield from resampled()
        if resampler is None:
            raise MediaError(f"audio track {self.track.index} holds no decodable sound"
                             + (f" ({damaged} damaged packets)" if damaged else ""))
        yield from resampled(final=True)
        if damaged:
            self.notes.append(f"the sound is damaged: {damaged} audio packet{'s' if damaged > 1 else ''} "
                              f"could not be decoded and {'were' if damaged > 1 else 'was'} skipped"
                              + (f" ({lost:.2f} s replaced by silence)" if lost >= 0.005 else ""))

    def _frames(self, container, stream) -> Iterator[av.AudioFrame | None]:
        """The track's decoded frames; None for each packet FFmpeg could not decode."""
        try:
            for packet in container.demux(stream):
                try:
                    yield from packet.decode()
                except av.error.FFmpegError:
                    yield None
        except av.error.FFmpegError as exc:  # the demuxer itself gave up: keep what was read
            self.notes.append(f"the sound stops early: the file cannot be read past "
                              f"{self.decoded_s:.2f} s of its audio (FFmpeg: {exc.strerror or exc})")

    def _windows(self, container, stream, origin: float) -> Iterator[AudioWindow]:
        # decoded chunks are gathered in a list and joined once a window's worth is there: joining every
        # chunk onto a growing buffer would copy a 10 s window some 500 times
        pending: list[np.ndarray] = []  # samples not yet cut into windows, from sample `start` on
        held = 0  # their count
        start = 0  # sample index (on the video's timeline) of the first pending sample, a window start
        skip = 0  # samples to drop before the next window starts (a hop longer than the window)
        for chunk in self._chunks(container, stream, origin):
            if skip:
                cut = min(skip, len(chunk))
                chunk, skip, start = chunk[cut:], skip - cut, start + cut
            if not len(chunk):
                continue
            pending.append(chunk)
            held += len(chunk)
            self.peak_samples = max(self.peak_samples, held)
            if held < self.window:
                continue
            buffer = np.concatenate(pending)
            while len(buffer) >= self.window:
                yield self._window(start, buffer[:self.window])
                step = min(self.hop, len(buffer))
                skip = self.hop - step
                buffer, start = buffer[step:], start + step
            pending, held = ([buffer] if len(buffer) else []), len(buffer)
        # the tail: the sound after the last full window, unless that window already reached the end
        if held and (start == 0 or held > self.window - self.hop):
            yield self._window(start, np.concatenate(pending))

    def _window(self, start: int, samples: np.ndarray) -> AudioWindow:
        return AudioWindow(start=start / self.rate, end=(start + len(samples)) / self.rate,
                           samples=np.array(samples, dtype=np.float32))


def audio_windows(path: str | Path, rate: int, window_s: float, hop_s: float | None = None, track: int = 0,
                  origin: float | None = None) -> AudioWindows:
    """Windows of `window_s` seconds every `hop_s` (default: back to back) of audio track `track`, mono
    float32 at `rate` Hz, timed on the video's timeline (from `origin`, the first frame's time on the file's
    clock as `VideoInfo.start` gives it; default: read from the file). The last window may be shorter.

    Returns a lazy iterable; errors (no audio, no such track, nothing decodable) are MediaErrors raised when
    iteration starts; its `notes` tell of damage met on the way.
    """
    return AudioWindows(path, rate, window_s, hop_s, track, origin)


