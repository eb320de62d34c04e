"""Off-policy evaluation on the Open Bandit Dataset sample that ships inside obp: ours beside obp's.

The standard OBD check: evaluate the Bernoulli-TS policy from the log of the
uniform-random policy (10,000 rounds, 80 items, 3 positions, campaign "all"),
and compare with the Bernoulli-TS policy's own on-policy log (its mean click
rate), which is the ground truth of that value. IPS, SNIPS and DR (reward
model: per item × position click rate of the random log) are computed by
``aidg.policy.ope`` and by ``obp.ope`` on the same arrays.

    python bench/ope.py [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from typing import Any

import numpy as np
import pandas as pd

from aidg.policy.ope import dr, ips, snips


def _load(policy: str) -> dict[str, Any]:
    logging.getLogger("obp").setLevel(logging.WARNING)  # "downloads the small-sized version": it is bundled
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from obp.dataset import OpenBanditDataset
        from sklearn.preprocessing import LabelEncoder

        class Pandas3OBD(OpenBanditDataset):  # type: ignore[misc]
            """obp's loader breaks on pandas 3 in pre_process: the same features, made explicit."""

            def pre_process(self) -> None:
                user = self.data.loc[:, self.data.columns.str.contains("user_feature")]
                self.context = pd.get_dummies(user, drop_first=True).to_numpy(dtype=float)
                cat = self.item_context.drop(columns=["item_id", "item_feature_0"]).apply(LabelEncoder().fit_transform)
                self.action_context = pd.concat([cat, self.item_context["item_feature_0"]], axis=1).to_numpy(float)

        data = Pandas3OBD(behavior_policy=policy, campaign="all")
        return dict(data.obtain_batch_bandit_feedback())


def run(n_bootstrap: int = 2000) -> dict[str, Any]:
    from obp.ope import DoublyRobust, InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting
    from obp.policy import BernoulliTS

    log = _load("random")
    truth = float(np.mean(_load("bts")["reward"]))
    n, k, positions = log["n_rounds"], log["n_actions"], int(log["position"].max()) + 1
    bts = BernoulliTS(n_actions=k, len_list=positions, is_zozotown_prior=True, campaign="all", random_state=12345)
    dist = bts.compute_batch_action_dist(n_rounds=n, n_sim=100_000)  # (n, k, positions)
    pos = log["position"]
    pi = dist[np.arange(n), :, pos]  # the evaluation policy at each row's position
    mean = pd.DataFrame({"a": log["action"], "p": pos, "r": log["reward"]}).groupby(["a", "p"]).r.mean()
    q_pos = np.zeros((k, positions))
    for (a, p), v in mean.items():
        q_pos[a, p] = v
    q = q_pos[:, pos].T  # (n, k) at each row's position
    q_full = np.repeat(q_pos[None, :, :], n, 0)  # obp's shape (n, k, positions)
    r, a, ps = log["reward"].astype(float), log["action"], log["pscore"]
    kw = {"reward": r, "action": a, "pscore": ps, "action_dist": dist, "position": pos}
    ours = {
        "ips": ips(r, a, ps, pi, n_bootstrap=n_bootstrap),
        "snips": snips(r, a, ps, pi, n_bootstrap=n_bootstrap),
        "dr": dr(r, a, ps, pi, q, n_bootstrap=n_bootstrap),
    }
    theirs = {
        "ips": InverseProbabilityWeighting().estimate_policy_value(**kw),
        "snips": SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**kw),
        "dr": DoublyRobust().estimate_policy_value(**kw, estimated_rewards_by_reg_model=q_full),
    }
    out: dict[str, Any] = {"rounds": n, "actions": k, "positions": positions, "bts_on_policy_value": truth}
    for name, e in ours.items():
        out[name] = {
            "ours": e.value,
            "obp": float(theirs[name]),
            "abs_diff": abs(e.value - float(theirs[name])),
            "ci95": [e.low, e.high],
            "relative_error_vs_on_policy": (e.value - truth) / truth,
        }
    out["max_abs_diff"] = max(out[m]["abs_diff"] for m in ours)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--bootstrap", type=int, default=2000)
    a = p.parse_args(argv)
    res = run(a.bootstrap)
    if a.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>28}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
