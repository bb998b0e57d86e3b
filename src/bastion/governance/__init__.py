"""Governance: the Gate every effect passes (scopes, policy, approvals, budgets, audit)."""

from bastion.governance.gate import Gate, idempotency_key

__all__ = ["Gate", "idempotency_key"]
