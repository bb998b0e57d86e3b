"""The run: scheduler, executors per node type, and the run lifecycle."""

from bastion.engine.runner import NodeResult, RunResult, coerce_inputs, load_run, result_of, resume_run, start_run

__all__ = ["NodeResult", "RunResult", "coerce_inputs", "load_run", "result_of", "resume_run", "start_run"]
