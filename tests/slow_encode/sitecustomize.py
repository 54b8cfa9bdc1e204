"""Test aid for the preemption tests: with XMIC_TEST_ENCODE_DELAY=S in the environment (which
Slurm passes on to the job), every encoder call of the extraction sleeps S seconds first, so a
task can be preempted between its shards at a known pace. Put this folder on PYTHONPATH."""
import os

if os.environ.get("XMIC_TEST_ENCODE_DELAY"):
    import time

    from xmic.extract import pipeline

    _delay = float(os.environ["XMIC_TEST_ENCODE_DELAY"])
    _encode = pipeline.encode_packed

    def _slow_encode(*args, **kwargs):
        time.sleep(_delay)
        return _encode(*args, **kwargs)

    pipeline.encode_packed = _slow_encode

if os.environ.get("XMIC_TEST_STEP_DELAY"):  # the same for each training step (grid tests)
    import time as _time

    from xmic.train import loop

    _step_delay = float(os.environ["XMIC_TEST_STEP_DELAY"])
    _step = loop.train_step

    def _slow_step(*args, **kwargs):
        _time.sleep(_step_delay)
        return _step(*args, **kwargs)

    loop.train_step = _slow_step
