"""Evaluation: the cross-dataset protocol (metrics, shared/novel classes, tables, plots, predict)."""
