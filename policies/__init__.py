"""The bundled Rego policy library (installed as package data of mlgate.policies).

See README.md beside this file for the layout and the environment thresholds.
"""
