"""Install AudioFormer; the project's metadata, dependencies and packages are in pyproject.toml."""

from setuptools import setup


setup()
