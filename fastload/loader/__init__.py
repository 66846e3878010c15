"""Feeding DALI from a store: the epoch sampler, the pipelines and the iterator (issue 3)."""
