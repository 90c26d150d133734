"""Upload jobs: models, claims and leases, the runner, dispatch backends."""
