"""Tellus ENSO: the embedded ENSO world, Nino indices and a ResoNet-style forecaster."""
