"""plait's Kubernetes backend: each attempt runs as a batch/v1 Job (issue 12; built in slices)."""
