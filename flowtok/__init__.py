"""flowtok: text-to-image and image-to-text by flow matching between compact 1D token latents.

The library never prints and never imports the CLI; heavy modules (torch) load lazily so that
``import flowtok`` stays cheap.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
