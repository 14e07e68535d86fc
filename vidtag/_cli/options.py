"""The options that several commands share, declared once: `classify` and `eval` take the same model and
sampling options, with the same names, help and defaults."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Registry name, model folder or Hub id (default: VIDTAG_MODEL or efficientnet-lite0).")]
Weights = Annotated[Optional[str], typer.Option(help="Another checkpoint (path or URL) for the model's architecture.")]
Prompt = Annotated[Optional[list[str]], typer.Option("--prompt", help="Prompt template for zero-shot labels, e.g. \"a video of {}\" (repeat to average several).")]
Clips = Annotated[Optional[int], typer.Option(help="Number of clips evenly across each video.", show_default="the model's")]
Window = Annotated[Optional[float], typer.Option(help="Sliding windows of SEC seconds.")]
Stride = Annotated[Optional[float], typer.Option(help="Seconds between window starts.", show_default="the window")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
BatchSize = Annotated[str, typer.Option("--batch-size", help="Clips per forward pass, or auto.")]
Workers = Annotated[Optional[int], typer.Option(help="Decoding processes (default: one per core, at most 4; 0: decode in this process).")]
Registry = Annotated[Optional[list[str]], typer.Option("--registry", help="Extra models.yaml file(s) with your own entries (also VIDTAG_REGISTRY).")]
Resume = Annotated[bool, typer.Option("--resume", help="Skip files already done in the output with the same settings.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
Vocabulary = Annotated[str, typer.Option("--vocabulary", help="The tags records carry: archive (the built-in archive vocabulary), raw (the model's labels only) or a YAML vocabulary file (see 'vidtag vocabulary show').")]
