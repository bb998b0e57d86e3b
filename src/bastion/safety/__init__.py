"""Safety: redaction and quarantine of untrusted text, the HTTP status gate."""

from bastion.safety.http_gate import classify_status
from bastion.safety.quarantine import Quarantined, quarantine, sanitise

__all__ = ["Quarantined", "classify_status", "quarantine", "sanitise"]
