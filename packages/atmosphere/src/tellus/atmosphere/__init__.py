"""Tellus atmosphere: the Pangu-style 3D Earth-Specific Transformer, forecasts, ensembles, tracking."""
