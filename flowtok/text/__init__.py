"""Text side of FlowTok: frozen encoders, the variational projector, and the caption decoder."""
