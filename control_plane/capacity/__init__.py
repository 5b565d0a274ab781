"""The capacity manager: the running control plane's use of the capacity libraries.

    registry (workers) ──┐
    router reports ──────┼─► SignalTracker ─► Autoscaler.decide ─► ScaleDecision (an event)
    instance book ───────┘                                             │
                                    Executor ◄─────────────────────────┘
                                      launch  ─► provider.launch ─► instance book, cost ledger
                                      drain   ─► registry.request_drain (heartbeat reply)
                                      release ─► provider.terminate after idle or a timeout
    Reconciler: provider.list_instances vs instance book vs registry ─► adopt / terminate / forget

| module | what it holds |
|---|---|
| `manager.py` | `CapacityManager`: the loop, floors (bursts), manual scale, pool status / views |
| `executor.py` | `Executor`: launches through providers, drain-first releases |
| `book.py` | `InstanceBook`: instance documents (store collection `instances`) and their facts |
| `views.py` | `PoolView`, `InstanceView`: what a pool holds right now, for bursts and the API |
| `costs.py` | `CostLedger`: what instances cost, so far and per hour |
| `reconciler.py` | the reconcile loop: nothing leaks across restarts or store loss |
| `providers.py` | building the configured providers from the settings |
| `reports.py` | reading routers' demand reports from the store |
| `gauges.py` | the Prometheus metrics of pools, cost, interruptions, decisions, launches |
"""
