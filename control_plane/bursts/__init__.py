"""Bursts: a pool held at a replica floor for a while (duration, idle timeout, budget), with a
timeline and its cost so far. `state.py` is the pure state machine, `records.py` the stored
documents and the API body, `manager.py` the control-plane service, `metrics.py` its gauges."""
