"""A vLLM- and TEI-compatible engine simulator for tests, demos and benchmarks without a GPU.

Read docs/simulator.md for flags, endpoints, the latency model, faults and determinism.
"""
