"""The synthetic marketplace with ground truth (DESIGN §3).

>>> from aidg.sim import simulate, Oracle
>>> world = simulate("tiny", seed=0)
>>> oracle = Oracle(world)
"""

from aidg.sim.oracle import Oracle, RelativeGrid
from aidg.sim.scales import SCALES, Scale, get_scale
from aidg.sim.summary import GraphSize, Personalization, graph_size, personalization
from aidg.sim.world import AS_OF, World, simulate

__all__ = [
    "AS_OF",
    "SCALES",
    "GraphSize",
    "Oracle",
    "Personalization",
    "RelativeGrid",
    "Scale",
    "World",
    "get_scale",
    "graph_size",
    "personalization",
    "simulate",
]
