"""kubetune's operator: reconciles FineTuneJob custom resources into trainer pods."""

__version__ = "0.1.0"
