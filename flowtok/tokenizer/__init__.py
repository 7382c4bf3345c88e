"""The 1D image tokenizer: images <-> K x C continuous latent tokens (TA-TiTok style)."""

from flowtok.tokenizer.model import Posterior, Tokenizer

__all__ = ["Posterior", "Tokenizer"]
