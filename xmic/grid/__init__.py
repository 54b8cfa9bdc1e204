"""Experiment grids: a recipe's runs planned once, trained and scored here or as job arrays, and
the paper's tables from what finished (``recipe``, ``plan``, ``runner``, ``state``, ``table``)."""
