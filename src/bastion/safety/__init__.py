"""Safety: redaction and quarantine of untrusted text, the HTTP status gate."""

from bastion.safety.http_gate import classify_status
from bastion.safety.quarantine import Quarantined, flag_injection, quarantine, sanitise, sanitise_value

__all__ = ["Quarantined", "classify_status", "flag_injection", "quarantine", "sanitise", "sanitise_value"]
