"""Monitoring: served predictions and delayed labels in, drift and realized-quality gauges,
Evidently HTML reports and retraining triggers out."""
