"""Kept for `python setup.py bdist_wheel`, which Databricks Asset Bundles run by default.

All metadata lives in pyproject.toml.
"""

from setuptools import setup

setup()
