"""Write the refactor goldens (``python tests/golden/make_golden.py WORKDIR [OUT]``): the tiny arena's and
evaluation's JSON of the tests' trained tiny world, as ``test_arena.py`` and ``test_profile_pipeline.py``
recompute them. Run it only on purpose: a golden
pins behaviour before code moves, and a change of numbers needs its own reason."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parents[2]))
    import torch

    from aidg import workflows
    from aidg.config import Settings
    from aidg.sim import simulate
    from aidg.sim.storage import save_world
    from tests.golden import ARENA, HERE, canonical

    torch.set_num_threads(1)  # as the tests' fixture trains (deterministic)
    root = Path(sys.argv[1])  # as tests/conftest.py's `trained` fixture builds it
    settings, data = Settings(home=root / "home"), root / "world"
    if not data.exists():
        save_world(simulate("tiny", seed=12), data)
        workflows.train(settings, data, scale="tiny", seed=0)
    arena = workflows.simulate_policy(settings, data, **ARENA)
    evaluation = workflows.evaluate(settings, data)
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE
    for name, report in (("arena_tiny", arena), ("evaluate_tiny", evaluation)):
        (out / f"{name}.json").write_text(json.dumps(canonical(report), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
