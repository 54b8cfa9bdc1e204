"""Test aid for the preemption tests: with XMIC_TEST_ENCODE_DELAY=S in the environment (which
Slurm passes on to the job), every encoder call of the extraction sleeps S seconds first, so a
task can be preempted between its shards at a known pace; XMIC_TEST_STEP_DELAY=S does the same
for each training step (grid tests). Put this folder on PYTHONPATH."""
import os


def _slow_down(module, name: str, delay: float) -> None:
    import time
    real = getattr(module, name)

    def slow(*args, **kwargs):
        time.sleep(delay)
        return real(*args, **kwargs)
    setattr(module, name, slow)


if os.environ.get("XMIC_TEST_ENCODE_DELAY"):
    from xmic.extract import pipeline
    _slow_down(pipeline, "encode_packed", float(os.environ["XMIC_TEST_ENCODE_DELAY"]))

if os.environ.get("XMIC_TEST_STEP_DELAY"):
    from xmic.train import steppers
    _slow_down(steppers, "train_step", float(os.environ["XMIC_TEST_STEP_DELAY"]))
