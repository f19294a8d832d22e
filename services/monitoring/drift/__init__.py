"""Drift monitoring: windowing and retraining hysteresis (`windows`), realized quality
(`quality`), and the Evidently report (`evidently_report`, the only module importing Evidently;
import it explicitly, it costs seconds)."""
