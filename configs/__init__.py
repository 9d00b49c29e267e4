"""The built-in YAML configurations, shipped as package data (``l1ad.configs``)."""
