"""Bastion: a secure orchestrator for LLM agent workflows."""

from bastion.workflow import Workflow

__all__ = ["Workflow"]
__version__ = "0.1.0"
