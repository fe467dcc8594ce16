"""Self-supervised speech units: k-means over the frames of a frozen feature model (GSLM / HuBERT units)."""

from zoo.audio.kmeans.units import KMeansUnits

__all__ = ["KMeansUnits"]
