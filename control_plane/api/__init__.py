"""HTTP endpoints of the control plane, one module per area; each exports `ROUTES`.

Handlers are thin: they read the request, call a service of `request.state.cp` (the
`ControlPlane` of this app) and shape the reply. `app.py` assembles the modules listed in
`API_MODULES`; a new area (pools, routes, bursts, dashboard) is a new module added there.
"""
