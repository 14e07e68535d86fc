"""Helpers for the audio tests: videos with sound made at test time with PyAV's encoders, and test signals."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def tone(seconds: float, rate: int, freqs: tuple[float, ...] = (440.0,), amplitude: float = 0.3,
         start: float = 0.0) -> np.ndarray:
    """A sum of sines, (samples,) float64, sampled at `rate` from time `start`."""
    t = start + np.arange(round(seconds * rate)) / rate
    return sum(amplitude * np.sin(2 * np.pi * f * t) for f in freqs)


def make_av(path: Path | str, tracks: list[np.ndarray] | None, *, rate: int = 16000, seconds: float = 2.0,
            fps: int = 10, codec: str = "pcm_s16le", video: bool = True, offsets: list[float] | None = None,
            frame_samples: int = 1024) -> Path:
    """A file with a small video stream (`seconds` long, unless `video` is False) and one audio stream per
    array in `tracks` ((channels, samples) or (samples,) float in [-1, 1]) at `rate`, encoded with `codec`;
    track i's first sample is at `offsets[i]` seconds on the file's clock (the video starts at 0)."""
    path = Path(path)
    offsets = offsets or [0.0] * len(tracks or [])
    with av.open(str(path), "w") as container:
        vstream = None
        if video:
            vstream = container.add_stream("libx264", rate=fps)
            vstream.width, vstream.height, vstream.pix_fmt = 32, 32, "yuv420p"
        streams = []
        for signal in tracks or []:
            signal = np.atleast_2d(signal)
            layout = "mono" if signal.shape[0] == 1 else "stereo"
            stream = container.add_stream(codec, rate=rate, layout=layout)
            streams.append((stream, signal))
        frames = []  # (time, stream, frame): muxed in time order, as a real recorder interleaves them
        if vstream is not None:
            for i in range(round(seconds * fps)):
                image = np.full((32, 32, 3), (i * 9) % 256, np.uint8)
                frames.append((i / fps, vstream, av.VideoFrame.from_ndarray(image, format="rgb24")))
        for (stream, signal), offset in zip(streams, offsets):
            fmt = stream.codec_context.format.name
            size = stream.codec_context.frame_size or frame_samples
            first = round(offset * rate)
            for at in range(0, signal.shape[1], size):
                chunk = signal[:, at:at + size]
                if chunk.shape[1] < size and stream.codec_context.frame_size:
                    chunk = np.pad(chunk, ((0, 0), (0, size - chunk.shape[1])))
                frame = _audio_frame(chunk, fmt, "mono" if signal.shape[0] == 1 else "stereo")
                frame.sample_rate, frame.pts, frame.time_base = rate, first + at, Fraction(1, rate)
                frames.append(((first + at) / rate, stream, frame))
        frames.sort(key=lambda item: item[0])
        for _, stream, frame in frames:
            container.mux(stream.encode(frame))
        for stream in [vstream, *(s for s, _ in streams)]:
            if stream is not None:
                container.mux(stream.encode(None))
    return path


def _audio_frame(chunk: np.ndarray, fmt: str, layout: str) -> av.AudioFrame:
    """An AudioFrame of `chunk` ((channels, samples) float) in the encoder's sample format."""
    planar = fmt.endswith("p")
    kind = fmt.rstrip("p")
    if kind == "s16":
        data = np.round(np.clip(chunk, -1, 1) * 32767).astype(np.int16)
    elif kind == "flt":
        data = chunk.astype(np.float32)
    else:
        raise ValueError(f"unsupported encoder sample format {fmt}")
    if not planar:
        data = data.T.reshape(1, -1)  # interleaved
    return av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=layout)


# -- tiny transformers audio checkpoints (random weights, seeded), saved with save_pretrained ------------------
LABELS = ["applause", "bark", "engine", "rain", "speech", "siren", "music"]
AST_MEL_BINS, AST_FRAMES = 32, 100  # 100 frames: windows up to (100 - 1) x 10 ms + 25 ms = 1.015 s at 16 kHz


def save_tiny_ast(folder: Path, *, labels: list[str] = LABELS, seed: int = 0) -> Path:
    """A tiny ASTForAudioClassification folder with its ASTFeatureExtractor (16 kHz, 32 mel bins)."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    config = tf.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          num_mel_bins=AST_MEL_BINS, max_length=AST_FRAMES, patch_size=16, frequency_stride=8,
                          time_stride=8, num_labels=len(labels), id2label=dict(enumerate(labels)),
                          label2id={name: i for i, name in enumerate(labels)})
    model = tf.ASTForAudioClassification(config).eval()
    # wide classifier weights spread the scores, so that the labels' order is well defined
    torch.nn.init.normal_(model.classifier.dense.weight, std=0.5)
    model.save_pretrained(str(folder))
    tf.ASTFeatureExtractor(num_mel_bins=AST_MEL_BINS, max_length=AST_FRAMES).save_pretrained(str(folder))
    return folder


CLAP_RATE, CLAP_SECONDS = 16000, 2  # the tiny CLAP's extractor: 2 s windows at 16 kHz, 16 mel bins


def save_tiny_clap(folder: Path, *, fusion: bool = False, seed: int = 0) -> Path:
    """A tiny ClapModel folder (HTSAT audio tower, RoBERTa-style text tower) with a character tokenizer and a
    ClapFeatureExtractor in the published layout (`rand_trunc` unfused, `fusion` fused)."""
    import torch
    import transformers as tf
    from _zeroshot_helpers import char_tokenizer

    ids = char_tokenizer(folder, bos=True, input_names=["input_ids", "attention_mask"])
    torch.manual_seed(seed)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=80, projection_dim=16, **ids)
    audio = dict(num_mel_bins=16, spec_size=64, patch_size=4, patch_stride=4, window_size=4, depths=[1, 1],
                 num_attention_heads=[2, 2], patch_embeds_hidden_size=16, hidden_size=32, projection_dim=16,
                 enable_fusion=fusion, fusion_type="aff_2d" if fusion else None)
    config = tf.ClapConfig(text_config=text, audio_config=audio, projection_dim=16, logit_scale_init_value=50.0)
    model = tf.ClapModel(config).eval()
    with torch.no_grad():  # the text side's scale apart from the audio side's, so that using the wrong one shows
        model.logit_scale_t.fill_(math.log(20.0))
    model.save_pretrained(str(folder))
    tf.ClapFeatureExtractor(feature_size=16, sampling_rate=CLAP_RATE, hop_length=160, fft_window_size=400,
                            max_length_s=CLAP_SECONDS, frequency_min=50, frequency_max=8000,
                            truncation="fusion" if fusion else "rand_trunc").save_pretrained(str(folder))
    return folder
