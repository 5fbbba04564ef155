"""airfl: over-the-air federated learning on real SDRs or an emulated air."""

__version__ = "0.1.0"
