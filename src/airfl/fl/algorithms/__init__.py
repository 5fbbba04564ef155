"""Federated learning algorithms, one file per family. They see only an `Aggregator`."""
