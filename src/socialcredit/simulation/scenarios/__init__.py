"""Scenario presets shipped with socialcredit (TOML files in this folder)."""
