"""Evaluation: how good a model is on labelled videos, calibrated thresholds, CI gates (docs/eval.md).

- truth: read a truth CSV or a folder of class folders, label normalisation and --label-map, path matching
- metrics: top-1/top-5, mean class accuracy, per-class P/R/F1, confusion, mAP, ECE, span-level figures
- calibration: fit a temperature and per-label thresholds; apply them to a file's clip probabilities
- gates: which --min-* gates fail
- report: terminal tables, JSON, an SVG plot
- core: the whole evaluation from records, or classifying the truth videos now
"""

from ..results.calibration import CalibrationProfile, ModelCalibration, apply_to_record, rescale
from .calibrate import fit_calibration
from .core import Evaluation, calibrate, classify_truth, evaluate
from .gates import GATES, failed_gates
from .metrics import compute_metrics
from .report import metrics_json, plot_svg, print_report
from .truth import Truth, TruthVideo, normalise_label, read_label_map, read_truth

__all__ = [
    "GATES", "CalibrationProfile", "Evaluation", "ModelCalibration", "Truth", "TruthVideo", "apply_to_record",
    "calibrate",
    "classify_truth", "compute_metrics", "evaluate", "failed_gates", "fit_calibration", "metrics_json",
    "normalise_label", "plot_svg", "print_report", "read_label_map", "read_truth", "rescale",
]
