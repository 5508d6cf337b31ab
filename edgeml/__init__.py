"""edgeml: take ML models from a workstation to fleets of small devices.

The core package holds what every part shares: errors, tensor schemas, the bundle format and signing.
It imports nothing heavy; subpackages (`edgeml.convert`, `edgeml.runtime`, ...) are imported on demand.
"""

__version__ = "0.1.0"
