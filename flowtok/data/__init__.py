"""Data sets and readers: image folders, latent shards, and the procedural shapes / emoji sets."""
