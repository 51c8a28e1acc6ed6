"""Tellus ocean: the embedded veros ocean and an ORCA-DL-style 3D ocean forecaster."""
