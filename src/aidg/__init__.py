"""AIDG, the AI Deal Generator.

Proposes, scores, explains and safely explores deal variants for the merchants
of a local-deals marketplace. The stages live in sub-packages (``aidg.sim``,
``aidg.store``, …); this package exports only the basics.
"""

from aidg.config import Settings, load_settings
from aidg.errors import AIDGError

__version__ = "0.1.0"

__all__ = ["AIDGError", "Settings", "__version__", "load_settings"]
