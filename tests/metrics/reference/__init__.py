"""Transcriptions of reference implementations the metrics are tested against."""
