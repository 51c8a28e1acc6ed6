"""Tellus evaluation: WeatherBench2-definition metrics, regions, baselines, scorecards, plots."""
