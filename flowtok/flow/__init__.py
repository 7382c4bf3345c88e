"""Flow side of FlowTok: transformer (velocity model), objective (flow matching + CFG indicator), sampler."""
