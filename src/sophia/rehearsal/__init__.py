"""Rehearsal tooling: a real Kubernetes control plane on one machine, with stand-ins for its kubelet and mesh."""
