"""`vidtag eval TRUTH`: accuracy on labelled videos, calibration, and CI gates (docs/eval.md).

Exit status: 0 the evaluation ran and every gate passed; 1 a --min-* gate failed (one line each on
stderr); 2 usage or a bad truth file (unknown labels listed, duplicates, empty); 3 fatal (weights
unavailable, an output not writable). Videos that fail count as misses, they do not change the status.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ..errors import ConfigError, VidtagError
from . import options as opt
from .context import EXIT_FAILED as EXIT_GATE
from .context import EXIT_INTERRUPTED, EXIT_OK, err, fail, per_record, progress, setup_logging, split_paths

FEW_VIDEOS = 50  # below this many labelled videos a fitted calibration gets a warning


def eval_(
    truth: Annotated[Path, typer.Argument(help="Truth: a CSV with columns path,label[,start,end] or a folder of class folders.")],
    records: Annotated[Optional[Path], typer.Option("--records", "-r", help="Predictions from an earlier run (.jsonl or .json); without it the videos are classified now.")] = None,
    model: opt.Model = None,
    weights: opt.Weights = None,
    prompt: opt.Prompt = None,
    clips: opt.Clips = None,
    window: opt.Window = None,
    stride: opt.Stride = None,
    device: opt.Device = "auto",
    batch_size: opt.BatchSize = "auto",
    workers: opt.Workers = None,
    registry: opt.Registry = None,
    save_records: Annotated[Optional[Path], typer.Option("--save-records", help="Append the records made now to this JSONL file (every label kept).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="With --save-records: reuse the records already there.")] = False,
    label_map: Annotated[Optional[Path], typer.Option("--label-map", help="truth label -> model label: a CSV truth,model or a JSON object.")] = None,
    threshold: Annotated[float, typer.Option(help="Multi-label truth: a label counts as predicted at this score.")] = 0.5,
    level: Annotated[str, typer.Option("--level", help="label: score the model's own labels; tag: score the records' archive tags (a tag answers for itself and its categories; truth in tag words).")] = "label",
    vocabulary: opt.Vocabulary = "archive",
    min_top1: Annotated[Optional[float], typer.Option("--min-top1", help="Exit 1 when top-1 accuracy is below this fraction.")] = None,
    min_top5: Annotated[Optional[float], typer.Option("--min-top5", help="Exit 1 when top-5 accuracy is below this fraction.")] = None,
    min_map: Annotated[Optional[float], typer.Option("--min-map", help="Exit 1 when mAP is below this fraction.")] = None,
    min_mean_class_accuracy: Annotated[Optional[float], typer.Option("--min-mean-class-accuracy", help="Exit 1 when the mean class accuracy is below this fraction.")] = None,
    calibrate: Annotated[Optional[Path], typer.Option("--calibrate", help="Fit a temperature and per-label thresholds; write (or update) this profile.")] = None,
    calibration: Annotated[Optional[Path], typer.Option("--calibration", help="Measure with this calibration profile applied (fitted on other videos).")] = None,
    target_precision: Annotated[float, typer.Option("--target-precision", help="With --calibrate: the precision each label's threshold aims for.")] = 0.9,
    json_out: Annotated[bool, typer.Option("--json", help="The figures as JSON on stdout instead of tables.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write the figures as JSON to this file.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a reliability diagram and per-class bars (SVG).")] = None,
    quiet: opt.Quiet = False,
) -> None:
    """Measure a model on labelled videos; fit calibration; fail a CI job below a --min-* gate."""
    from ..evaluation import (CalibrationProfile, calibrate as fit, classify_truth, evaluate, failed_gates,
                              metrics_json, plot_svg, print_report, read_label_map, read_truth)
    from ..evaluation.gates import check_minimums
    from ..evaluation.report import write_text
    from ..records.readers import read_records

    setup_logging(False)  # a malformed record is skipped with a warning line
    minimums = dict(top1=min_top1, top5=min_top5, mAP=min_map, mean_class_accuracy=min_mean_class_accuracy)
    try:
        check_minimums(minimums)
        if records is not None and (model or weights or prompt or clips or window or save_records):
            raise ConfigError("--records evaluates an earlier run: the classify options (-m, --weights, --prompt, "
                              "--clips, --window, --save-records) apply only when eval classifies the videos itself")
        if calibrate is not None and calibration is not None:
            raise ConfigError("--calibrate fits a profile on uncalibrated scores: do not combine it with --calibration")
        profile = CalibrationProfile.load(calibration) if calibration is not None else None
        if resume and save_records is None:
            raise ConfigError("--resume needs --save-records FILE (the records to reuse)")
        truth_set = read_truth(truth)
        mapping = read_label_map(label_map) if label_map is not None else None
        model_labels = None
        if records is not None:
            if not records.exists():
                raise ConfigError(f"--records: no such file: {records}")
            predictions = read_records(str(records))
            if not predictions:
                raise ConfigError(f"--records {records} holds no records")
        else:
            options = dict(weights=weights, clips=clips, window=window, stride=stride, device=device, vocabulary=vocabulary,
                           batch_size=batch_size, workers=workers, registry_files=(list(split_paths(registry)) or None))
            with progress(len(truth_set.videos), quiet, "classifying") as update:
                predictions, model_labels = classify_truth(
                    truth_set, model=model, label_map=mapping, prompts=prompt or None, save_records=save_records,
                    resume=resume, on_record=per_record(update), level=level,
                    **{k: v for k, v in options.items() if v is not None})
        result = evaluate(truth_set, predictions, label_map=mapping, model_labels=model_labels,
                          threshold=threshold, registry_files=(list(split_paths(registry)) or None), calibration=profile,
                          level=level, vocabulary=vocabulary)
        metrics = result.metrics
        if profile is not None:
            metrics["calibration_applied"] = profile.for_model(result.model).settings()
        if calibrate is not None:
            fitted = fit(result, target_precision)
            profiles = CalibrationProfile.load(calibrate, missing_ok=True)
            profiles.models[fitted.model] = fitted
            profiles.save(calibrate)
            metrics["calibration"] = {"profile": str(calibrate), "temperature": fitted.temperature,
                                      "thresholds": fitted.thresholds, "unreachable": fitted.unreachable, **fitted.fit}
            if fitted.fit["videos"] < FEW_VIDEOS:
                metrics["notes"].append(f"calibration: fitted on {fitted.fit['videos']} video(s), too few to "
                                        f"trust; a few hundred labelled videos give a usable temperature and thresholds")
        if output is not None:
            write_text(output, metrics_json(metrics))
        if plot is not None:
            write_text(plot, plot_svg(metrics))
    except VidtagError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        err.print("vidtag: interrupted", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if json_out:
        sys.stdout.write(metrics_json(metrics))
    else:
        print_report(metrics, Console(width=None if sys.stdout.isatty() else 120, highlight=False))
        if calibrate is not None:
            cal = metrics["calibration"]
            err.print(f"vidtag: calibration for {result.model} written to {calibrate}: temperature "
                      f"{cal['temperature']:.3f}, {len(cal['thresholds'])} threshold(s), "
                      f"{len(cal['unreachable'])} label(s) never reach precision {target_precision:g}",
                      markup=False)
    failures = failed_gates(metrics, minimums)
    for line in failures:
        err.print(f"vidtag: gate failed: {line}", markup=False)
    raise typer.Exit(EXIT_GATE if failures else EXIT_OK)
