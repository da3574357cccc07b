"""Several municipalities on one installation (their deployments) and the regional layer
built from their published marts only (docs/region.md)."""
