"""The workflow language: workflow.yaml as Pydantic models, loading, graph checks, templates."""

from bastion.spec.loader import LoadedSpec, load_spec, parse_spec
from bastion.spec.models import (AdaptiveNode, AgentSpec, ApprovalNode, InputSpec, RoutineNode,
                                 ToolNode, ToolSpec, WorkflowSpec)
from bastion.spec.templates import render

__all__ = ["AdaptiveNode", "AgentSpec", "ApprovalNode", "InputSpec", "LoadedSpec", "RoutineNode",
           "ToolNode", "ToolSpec", "WorkflowSpec", "load_spec", "parse_spec", "render"]
