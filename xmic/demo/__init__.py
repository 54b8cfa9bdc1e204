"""The demo: a generated egocentric world (``world``) and the six steps run on it (``run``)."""
