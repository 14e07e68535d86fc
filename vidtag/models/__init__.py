"""Models: the registry and its recipes, weights and checkpoints, devices, label sets, the families'
networks and loading a model. Imports only vidtag.errors; see docs/architecture.md."""
