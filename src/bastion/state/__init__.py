"""Durable state: the Store protocol, its backends, typed events and the run projection."""

from bastion.state.events import Event
from bastion.state.projection import NodeState, RunState
from bastion.state.store import DEFAULT_STORE, Recorded, RunSummary, Store, open_store, store_url

__all__ = ["DEFAULT_STORE", "Event", "NodeState", "Recorded", "RunState", "RunSummary", "Store",
           "open_store", "store_url"]
