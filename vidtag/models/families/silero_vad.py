"""Silero VAD (Silero Team, MIT): speech probabilities of 16 kHz mono audio, native, for the published weights.

The network reads the audio in chunks of 512 samples (32 ms), each with the 64 samples before it as
context (zeros before the first chunk), and gives one speech probability per chunk:

* a short-time Fourier transform as a fixed convolution (`stft.forward_basis_buffer`: 129 cosine and
  129 sine filters of 256 taps, hop 128) over the 576 samples plus 64 mirrored at the end, whose
  magnitude is 4 frames of 129 frequency bins;
* four 3-tap convolutions with ReLU (129 -> 128, 128 -> 64 stride 2, 64 -> 64 stride 2, 64 -> 128),
  which fold the 4 frames into one 128-dimensional feature per chunk;
* an LSTM cell (128 units) whose state runs on from chunk to chunk;
* ReLU, a 1x1 convolution to one value and a sigmoid.

Only the LSTM looks across chunks, so the front end (spectrum and convolutions) runs on many chunks at
once as one batch, the LSTM runs through their features in one call (`torch.lstm`, which computes the
input projections of all steps together and only the recurrence step by step), and the head runs on all
of its outputs at once, instead of the package's one model call per chunk.

How the front end's convolutions run on the batch decides how close the result is to the package's:

* `exact=True` (the default): each convolution is torch's native im2col-and-matrix-product kernel
  applied chunk by chunk inside one call (`aten._slow_conv2d_forward` on the batch), the kernel torch
  picks for the package's one-chunk batches, so the front end's float32 sums are the package's, bit for
  bit; only the LSTM's input projections are summed in another order (probabilities within ~1e-6).
* `exact=False`: `conv1d` on the whole batch, which torch hands to oneDNN's batched kernels: several
  times faster, with float32 sums in another order, a few units in the last place of each activation,
  which the network carries to the probabilities as differences of ~1e-5.

The weights are those the package's own model (`silero_vad.load_silero_vad()`) runs: the package ships
them in its TorchScript file and, with the state dict's names, as the initializers of
`silero_vad_16k_op15.onnx`, which vidtag reads as data (`checkpoint.load_state_dict`). The wheel's
`silero_vad_16k.safetensors` holds a different set of weights (another training: up to 0.8 apart in
probability from the package's model on speech), so it is not used. The package's 8 kHz network has its
weights only inside the TorchScript file and graph constants, which vidtag does not read: 16 kHz only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import MediaError
from ..checkpoint import load_state_dict, load_strict

WEIGHTS = "pypi:silero-vad/data/silero_vad_16k_op15.onnx"
SAMPLE_RATE = 16000  # the rate the network reads
CHUNK = 512  # samples per speech probability (32 ms)
CONTEXT = 64  # samples of the previous chunk each chunk is read with
_N_FFT, _HOP = 256, 128
_BINS = _N_FFT // 2 + 1
_HIDDEN = 128
_STRIDES = (1, 2, 2, 1)
_CHANNELS = (_BINS, 128, 64, 64, 128)
_PREFIX = "model."  # the ONNX file names the state dict's tensors under the exporter's wrapper module
BATCH_CHUNKS = 1024  # chunks the front end reads at once (33 s of audio; some 20 MB of activations)


class _Stft(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("forward_basis_buffer", torch.zeros(2 * _BINS, 1, _N_FFT))


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.reparam_conv = nn.Conv1d(c_in, c_out, 3, stride=stride, padding=1)


class _Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTMCell(_HIDDEN, _HIDDEN)
        # the layout of the checkpoint's head: dropout (inactive at inference), ReLU, 1x1 conv, sigmoid
        self.decoder = nn.Sequential(nn.Dropout(0.1), nn.ReLU(), nn.Conv1d(_HIDDEN, 1, 1), nn.Sigmoid())


State = tuple[torch.Tensor, torch.Tensor]  # the LSTM's (h, c), each (1, 128)


def _conv_per_chunk(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                    padding: int) -> torch.Tensor:
    """`conv1d` on a batch of chunks with the arithmetic torch uses for a batch of one (see the module's
    docstring): its native kernel, which runs one matrix product per batch item."""
    return torch.ops.aten._slow_conv2d_forward(x.unsqueeze(2), weight.unsqueeze(2), (1, weight.shape[-1]), bias,
                                               (1, stride), (0, padding)).squeeze(2)


class SileroVad(nn.Module):
    """The 16 kHz network; its modules carry the checkpoint's key names so it loads strictly. `exact`:
    the front end's arithmetic is the package's (see the module's docstring)."""

    def __init__(self, exact: bool = True) -> None:
        super().__init__()
        self.exact = exact
        self.stft = _Stft()
        self.encoder = nn.Sequential(*(_Block(_CHANNELS[i], _CHANNELS[i + 1], s) for i, s in enumerate(_STRIDES)))
        self.decoder = _Decoder()

    @staticmethod
    def initial_state() -> State:
        """The LSTM state before the first chunk (the package's reset state: zeros)."""
        return torch.zeros(1, _HIDDEN), torch.zeros(1, _HIDDEN)

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """(n, 128) features of n independent windows of CONTEXT + CHUNK samples, (n, 576)."""
        conv = _conv_per_chunk if self.exact else F.conv1d
        x = F.pad(windows.unsqueeze(1), (0, CONTEXT), mode="reflect")
        spec = conv(x, self.stft.forward_basis_buffer, None, _HOP, 0)
        x = torch.sqrt(spec[:, :_BINS].square() + spec[:, _BINS:].square())
        for block, stride in zip(self.encoder, _STRIDES):
            x = F.relu(conv(x, block.reparam_conv.weight, block.reparam_conv.bias, stride, 1))
        return x.squeeze(-1)

    def recur(self, features: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The LSTM's outputs (n, 128) over n consecutive chunks' features, and the state after them."""
        rnn = self.decoder.rnn
        h, c = state
        out, h, c = torch.lstm(features.unsqueeze(1), (h.unsqueeze(0), c.unsqueeze(0)),
                               [rnn.weight_ih, rnn.weight_hh, rnn.bias_ih, rnn.bias_hh],
                               True, 1, 0.0, False, False, False)  # biases, 1 layer, no dropout, eval, one way, time-first
        return out.squeeze(1), (h.squeeze(0), c.squeeze(0))

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Speech probabilities (n,) from the LSTM's outputs (n, 128)."""
        conv = _conv_per_chunk if self.exact else F.conv1d
        out = self.decoder.decoder[2]
        return torch.sigmoid(conv(F.relu(hidden).unsqueeze(-1), out.weight, out.bias, 1, 0)).reshape(-1)

    def forward(self, windows: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Probabilities (n,) of n consecutive chunks, each window (n, 576) being CONTEXT + CHUNK samples,
        from the LSTM state before the first; and the state after the last."""
        hidden, state = self.recur(self.features(windows), state)
        return self.head(hidden), state


def load(weights: str | Path | None = None, exact: bool = True) -> SileroVad:
    """The network with the packaged weights (or those at `weights`: a `pypi:` source or a file path),
    read as data and loaded strictly: a FatalError names a missing, unexpected or misshapen tensor.
    `exact`: see the module's docstring."""
    from ..weights import require_weights

    source = str(weights) if weights is not None else WEIGHTS
    path = require_weights(source, "silero-vad")
    state = {k.removeprefix(_PREFIX): v for k, v in load_state_dict(path).items()}
    net = SileroVad(exact)
    load_strict(net, state, path, arch="Silero VAD (16 kHz)")
    return net.eval()


def _samples(window: object) -> torch.Tensor:
    x = torch.as_tensor(window)
    if x.dim() != 1:
        raise ValueError(f"speech detection reads mono audio as one row of samples, not shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"speech detection reads float samples in [-1, 1], not {x.dtype}")
    x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise MediaError("the audio holds samples that are not numbers (NaN or infinite): it is damaged")
    return x


class SpeechStream:
    """Speech probabilities of one audio stream fed in windows of any length: the LSTM state, the last
    CONTEXT samples and the samples short of a whole chunk carry over from one window to the next, so
    the probabilities are those of the whole stream read at once, and memory does not grow with it."""

    def __init__(self, net: SileroVad, batch_chunks: int = BATCH_CHUNKS) -> None:
        self.net, self.batch_chunks = net, batch_chunks
        self.reset()

    def reset(self) -> None:
        """Start a new stream (the package's `reset_states`): zero state and context."""
        self.state = self.net.initial_state()
        self.tail = torch.zeros(CONTEXT)  # the CONTEXT samples before the next chunk
        self.pending = torch.zeros(0)  # samples received but short of a whole chunk
        self.samples = 0  # samples received since the reset (the audio's length, for the spans' last end)
        self.finished = False

    @torch.inference_mode()
    def push(self, window: object) -> np.ndarray:
        """The probabilities (float32) of the chunks this window of 16 kHz mono samples completes."""
        if self.finished:
            raise ValueError("this speech stream has finished: reset() it to read another")
        x = _samples(window)
        self.samples += len(x)
        x = torch.cat([self.pending, x])
        whole = len(x) // CHUNK * CHUNK
        self.pending = x[whole:].clone()
        return self._run(x[:whole])

    @torch.inference_mode()
    def finish(self) -> np.ndarray:
        """The probability of the last, partial chunk (zero-padded to CHUNK samples, as the package pads
        it), or none when the stream ended on a whole chunk. The stream then takes no more samples until
        `reset`; `samples` still says how long it was."""
        probs = self._run(F.pad(self.pending, (0, CHUNK - len(self.pending)))) if len(self.pending) else \
            np.zeros(0, dtype=np.float32)
        self.pending, self.finished = self.pending[:0], True
        return probs

    def _run(self, x: torch.Tensor) -> np.ndarray:
        out = []
        for start in range(0, len(x), self.batch_chunks * CHUNK):
            part = torch.cat([self.tail, x[start:start + self.batch_chunks * CHUNK]])
            windows = part.unfold(0, CONTEXT + CHUNK, CHUNK)  # each chunk with the CONTEXT samples before it
            probs, self.state = self.net(windows, self.state)
            self.tail = part[-CONTEXT:].clone()
            out.append(probs)
        return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def speech_probabilities(windows: Iterable[object], net: SileroVad | None = None) -> Iterator[np.ndarray]:
    """For consecutive windows of 16 kHz mono float audio (numpy or torch, any lengths), the speech
    probabilities (float32) of the 512-sample chunks each completes, one array per window, then one
    more array for the last partial chunk (zero-padded; empty when there is none). The network's state
    runs on across windows: the arrays joined are the probabilities of the whole audio."""
    stream = SpeechStream(net if net is not None else load())
    for window in windows:
        yield stream.push(window)
    yield stream.finish()
