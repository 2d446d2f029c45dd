"""Target descriptors, capabilities and the cost model (filled by the target-descriptor issue)."""
