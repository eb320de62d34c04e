"""What the CLI and the demo run: train the encoders and the deal scorer on a data folder, evaluate, explain."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from aidg.config import Settings
from aidg.domain import DEAL_TERMS
from aidg.errors import DataError, NotFoundError
from aidg.progress import Progress
from aidg.registry import ModelRegistry


def train(
    settings: Settings,
    data: Path,
    scale: str = "small",
    seed: int = 0,
    sentiment_full: bool = False,
    progress: Progress | None = None,
    dp: bool = False,
) -> dict[str, Any]:
    """Train every branch and the fusion, then the deal scorer and its explainers; register; return the report.

    ``dp``: the encoders train with differential privacy, the merchant as the unit (settings' ``privacy.dp_*``);
    the report's ``dp_epsilon`` / ``dp_delta`` are the accounted guarantee (None without ``dp``).
    """
    from aidg.online.serving_model import SERVING_ARTIFACT, ServingModel
    from aidg.privacy.crypto import Cipher
    from aidg.sim.storage import load_data_folder
    from aidg.training import distributed
    from aidg.training.data import without_excluded
    from aidg.training.explainers import fit_scorer_bundle
    from aidg.training.presets import dp_config, scorer_options, train_options
    from aidg.training.profile import train_profile

    if dp and distributed.active():
        raise DataError("differential privacy trains on one process (DP-SGD accounts per process): not under torchrun")
    t0 = time.perf_counter()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))  # (under torchrun: the rank's share)
    tables, as_of, _ = load_data_folder(data)
    tables, n_excluded = without_excluded(settings, tables)  # no training consent, or erased
    options = train_options(settings, scale, seed, sentiment_full, dp_config(settings) if dp else None)
    say = progress or (lambda s, f: None)
    pm, metrics, split = train_profile(
        tables,
        as_of if as_of is not None else None,  # type: ignore[arg-type]
        options,
        lambda s, f: say(f"encoders: {s}", 0.6 * f),
    )
    t_scorer = time.perf_counter()
    bundle = fit_scorer_bundle(
        pm, tables, settings, scorer_options(settings, scale, seed), lambda s, f: say(s, 0.6 + 0.38 * f)
    )
    pm.remember_parts(False)
    if bundle.snapshot is None:  # a rank other than 0 under torchrun: its part ended with the last step of training
        return {"rank": distributed.rank(), "seconds": round(time.perf_counter() - t0, 2)}
    metrics.update(bundle.metrics)
    metrics["seconds"]["scorer_and_explainers"] = time.perf_counter() - t_scorer
    t_serving = time.perf_counter()
    say("serving inputs: the data's snapshot and the context projection", 0.98)
    # `aidg serve` starts from them; the explainers' snapshot is the served one when every merchant trained
    reuse = (bundle.merchant_ids, bundle.snapshot) if seed == int(pm.meta.get("seed", 0)) else None
    served = ServingModel.for_training(settings, pm, data, reuse)
    pm.artifacts[SERVING_ARTIFACT] = served.inputs()
    metrics["seconds"]["serving_inputs"] = time.perf_counter() - t_serving
    params = {
        "data": str(data),
        "scale": scale,
        "seed": seed,
        "sentiment_examples": options.sentiment_examples,
        "sentiment_epochs": options.sentiment_epochs,
        "epochs": options.budget.epochs,
        "holdout": options.holdout,
        "as_of": pm.meta["as_of"],
        "dp": dp,
    }
    flat = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    version = ModelRegistry(settings).register_profile(pm, params, flat)
    t_package = time.perf_counter()
    say("the serving package: what `aidg serve` and `aidg explain` start from", 0.99)
    served.package.publish(settings, version, Cipher.from_settings(settings))  # what serve and explain start from
    metrics["seconds"]["serving_package"] = time.perf_counter() - t_package
    privacy = pm.meta.get("privacy") or {}
    return {
        "model": "aidg-merchant-profile",
        "version": version,
        "as_of": pm.meta["as_of"],
        "train_merchants": len(split.train),
        "heldout_merchants": len(split.heldout),
        "excluded_merchants": n_excluded,  # no training consent, or erased
        "dp_epsilon": privacy.get("epsilon"),
        "dp_delta": privacy.get("delta"),
        "nproc": distributed.world(),  # processes that trained it (DistributedDataParallel when > 1)
        "metrics": flat,
        "stage_seconds": {k: round(v, 2) for k, v in metrics["seconds"].items()},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def evaluate(
    settings: Settings, data: Path, version: str = "latest", progress: Progress | None = None
) -> dict[str, Any]:
    """Evaluate a registered version on the held-out merchants of ``data``: encoders, then scorer and explainers."""
    from aidg.sim.storage import load_data_folder
    from aidg.training.profile_evaluation import evaluate_profile
    from aidg.training.scorer_evaluation import evaluate_scorer

    t0 = time.perf_counter()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    tables, _, world = load_data_folder(data)
    registry = ModelRegistry(settings)
    pm = registry.load_profile(version)
    pm.remember_parts()  # the encoders' and the scorer's figures read the same as-of parts and notes
    say = progress or (lambda s, f: None)
    out = evaluate_profile(pm, tables, truth_world=world, progress=lambda s, f: say(f"encoders: {s}", 0.6 * f))
    if pm.scorer is not None:
        out.update(
            evaluate_scorer(pm, tables, settings, truth_world=world, progress=lambda s, f: say(s, 0.6 + 0.38 * f))
        )
        if world is not None and settings.posterior.enabled:
            out.update(_posterior_coverage(settings, data, pm, say))
    pm.remember_parts(False)
    out["version"] = version if version != "latest" else registry.versions()[-1]
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _posterior_coverage(settings: Settings, data: Path, pm: Any, say: Progress) -> dict[str, Any]:
    """The decision posterior's 90 % intervals of the held-out merchants' true expected GP30 uplift, before its first
    decision (warm-started from each merchant's record): ``interval_coverage_90``, ``interval_width_90`` and how
    much each part's prior was widened (:func:`aidg.policy.arena.interval_coverage`, the arena's ``posterior``)."""
    from aidg.policy.arena import interval_coverage

    say("the decision posterior's 90 % intervals against the truth", 0.98)
    arena, _ = arena_data(settings, data, days=7, latent_reference=False, records=True, model=pm)
    return interval_coverage(arena, settings)


def explain(
    settings: Settings,
    data: Path,
    merchant_id: str,
    *,
    version: str = "latest",
    at: str | None = None,
    n_variants: int | None = None,
    change: tuple[int, str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Candidates for one merchant, scored and explained by a registered version.

    At the version's as-of date (the default) it reads the version's serving package only (built once if the data
    folder has none: :mod:`aidg.online.serving_package`); another date (``at``) recomputes the merchant's snapshot
    from the tables and the encoders.
    """
    from aidg.features.candidates import CandidateGenerator
    from aidg.inference.snapshot import Snapshot
    from aidg.online.serving_package import load_package
    from aidg.privacy.crypto import Cipher

    t0 = time.perf_counter()
    torch.set_num_threads(1)
    say = progress or (lambda s, f: None)
    cipher = Cipher.from_settings(settings)
    package, stored = load_package(settings, Path(data), version, cipher)
    if not stored and package.projector is not None:  # a version's own folder: the next explain reads it
        package.save(settings, cipher)
    when = pd.Timestamp(at) if at is not None else package.as_of
    say("merchant features and profile", 0.2)
    if when == package.as_of:
        ctx, snap = package.context(), Snapshot.from_bytes(package.snapshot, when)
        merchants, deals = package.tables["merchants"], package.tables["deals"]
    else:
        ctx, snap, merchants, deals = _features_at(settings, data, package.version, when)
    if str(merchant_id) not in ctx.merchant_code.index:
        raise NotFoundError(f"unknown merchant {merchant_id!r}: it is not in {data}/merchants")
    n = n_variants if n_variants is not None else settings.bandit.n_candidates
    gen = CandidateGenerator(merchants, deals, settings.candidates)
    candidates = gen.generate(str(merchant_id), when, n)
    say("scoring and explaining", 0.8)
    explainer = package.explainer(settings)
    out = explainer.explain(ctx, snap, candidates, change=change, current=gen.current(merchant_id)).to_dict()
    out["version"] = package.version
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _features_at(settings: Settings, data: Path, version: str, when: pd.Timestamp) -> tuple[Any, Any, Any, Any]:
    """The coded tables and every merchant's snapshot at another date than the version's as-of (the encoders run)."""
    from aidg.features.context import FeatureContext
    from aidg.inference.snapshot import snapshot
    from aidg.sim.storage import load_data_folder

    tables, _, _ = load_data_folder(data)
    pm = ModelRegistry(settings).load_profile(version)
    ctx = FeatureContext.from_tables(tables, when)
    return ctx, snapshot(pm, ctx, when, seed=int(pm.meta.get("seed", 0))), tables["merchants"], tables["deals"]


def arena_data(
    settings: Settings,
    data: Path,
    days: int = 90,
    version: str = "latest",
    latent_reference: bool = True,
    records: bool = True,
    drop: frozenset[str] = frozenset(),
    model: Any = None,
    merchants: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The arena's setup (:func:`aidg.policy.arena.build_arena`) for a version's held-out merchants of a world
    (``latent_reference``: fit the ``latent_informed`` reference too; ``records``: score the merchants' records,
    where ``risk_aware_ts``'s posterior starts; ``drop``: profile branches switched off for every merchant, the
    decision ablation; ``model``: a trained :class:`~aidg.inference.profile_model.ProfileModel` with its scorer,
    judged in place of a registered version, as the privacy audit does; ``merchants``: a seeded random subsample of
    that many held-out merchants, for worlds whose held-out merchants are too many to replay on one machine)."""
    from aidg.explain.explainer import load_explainer
    from aidg.features.candidates import CandidateGenerator
    from aidg.features.context import FeatureContext
    from aidg.inference.history import merchant_record, scorer_predict
    from aidg.inference.scoring import score_candidates
    from aidg.inference.snapshot import snapshot
    from aidg.policy.arena import RepsOfMerchants, build_arena
    from aidg.policy.autonomy import segments_of
    from aidg.sim.oracle import Oracle
    from aidg.sim.storage import load_data_folder

    tables, _, world = load_data_folder(data)
    if world is None:
        raise DataError(f"{data} has no simulator truth: the arena judges policies by it; run it on `aidg simulate`")
    registry = ModelRegistry(settings)
    pm = registry.load_profile(version) if model is None else model
    branches = list(pm.fusion.config.branches)
    unknown = sorted(set(drop) - set(branches))
    if unknown:
        raise DataError(f"unknown profile branches {', '.join(unknown)}; choose from {', '.join(branches)}")
    scorer = load_explainer(pm, settings).scorer
    at = pd.Timestamp(pm.meta["as_of"])
    ctx = FeatureContext.from_tables(tables, at)
    ids = [m for m in pm.meta["heldout_merchants"] if m in ctx.merchant_code.index]
    if not ids:
        raise DataError(f"none of the model's held-out merchants is in {data}: train the version on this world")
    heldout = len(ids)
    ids = subsample(ids, merchants)
    oracle = Oracle(world, settings.reward)
    cand = CandidateGenerator(tables["merchants"], tables["deals"], settings.candidates).generate_many(
        ids, at, settings.bandit.n_candidates
    )
    # the current system's deal is the merchant's habitual deal (the merchants table's baseline terms, the
    # reference of GP30 uplift and of the guard's baseline); the legacy proposal (last deal nudged by the
    # rep's habit) is judged beside it for reference
    current = oracle.baseline_deal(ids).assign(merchant_id=ids, variant=-1, type="current")
    current["focus"] = "primary"
    current["distance"] = 0.0
    legacy = oracle.current_system_deal(ids, at).assign(merchant_id=ids)
    snap = snapshot(pm, ctx, at, seed=int(pm.meta.get("seed", 0)), drop=frozenset(drop))
    scored = score_candidates(scorer, ctx, snap, cand)
    scored_current = score_candidates(scorer, ctx, snap, current[cand.columns])
    rows = ctx.merchant_code.loc[ids].to_numpy()
    override_rate = snap.view.numeric[rows, snap.view.names.index("override_rate")]
    table = tables["merchants"].set_index("merchant_id").loc[ids]
    lp = (table.list_price if "list_price" in table else table.baseline_price).to_numpy(float)

    def truth_at(terms: pd.DataFrame, week: int) -> pd.DataFrame:
        return oracle.evaluate(terms.merchant_id.to_numpy(), terms, at=at + pd.Timedelta(days=7 * week + 3))

    record = (
        merchant_record(scorer_predict(scorer, ctx, snap), tables, ids, at)
        if records and settings.posterior.enabled
        else None
    )
    latent = (
        _latent_scores(oracle, tables, pm.meta.get("train_merchants", []), ids, cand, current, at, settings)
        if latent_reference
        else None
    )
    reps = RepsOfMerchants(
        rep=oracle.rep_index(ids), n_reps=len(oracle.rep_ids),
        segment=segments_of(tables, ids, settings.autonomy.segment_by),
        dpref=oracle.traits(ids).preferred_discount.to_numpy(float), trust=oracle.trust_config,
    )  # fmt: skip
    arena = build_arena(
        scored.table,
        scored.representation,
        scored_current.table,
        scored_current.representation,
        override_rate,
        lp,
        truth_at,
        days,
        legacy=legacy,
        latent_score=latent,
        record=record,
        reps=reps,
    )
    name = "in memory" if model is not None else version if version != "latest" else registry.versions()[-1]
    return arena, {"version": name, "merchants": len(ids), "heldout_merchants": heldout}


def subsample(ids: list[str], n: int | None) -> list[str]:
    """``n`` of ``ids`` drawn at random with a fixed seed (every run replays the same ones), in id order; all of
    them when ``n`` is None or not smaller."""
    if n is None or n >= len(ids):
        return ids
    pool = np.asarray(sorted(ids), dtype=object)  # the same draw whatever order the ids come in
    return sorted(str(m) for m in np.random.default_rng(0).choice(pool, n, replace=False))


LATENT_TRAIN_MERCHANTS = 400  # training merchants whose deals fit the latent-informed reference


def _latent_scores(
    oracle: Any,
    tables: dict[str, pd.DataFrame],
    train_ids: list[str],
    ids: list[str],
    cand: pd.DataFrame,
    current: pd.DataFrame,
    at: pd.Timestamp,
    settings: Settings,
) -> np.ndarray:
    """The ``latent_informed`` reference's predicted reward of each held-out merchant's variants and current deal
    (merchants × (n + 1)): fitted on up to 400 training merchants' candidates and habitual deals at the as-of date,
    the oracle's expectations as targets (:mod:`aidg.policy.latent_informed`)."""
    from aidg.features.candidates import CandidateGenerator
    from aidg.policy.latent_informed import LatentRewardModel, latent_features

    known = set(tables["merchants"].merchant_id)
    train = sorted(m for m in train_ids if m in known)[:LATENT_TRAIN_MERCHANTS]
    if not train:
        raise DataError("the version records no training merchants of this world: train it on this world")
    gen = CandidateGenerator(tables["merchants"], tables["deals"], settings.candidates)
    tc = gen.generate_many(train, at, settings.bandit.n_candidates)
    tcur = oracle.baseline_deal(train).assign(merchant_id=train)
    fit_terms = pd.concat([tc[[*DEAL_TERMS, "merchant_id"]], tcur[[*DEAL_TERMS, "merchant_id"]]], ignore_index=True)

    def features(terms: pd.DataFrame) -> np.ndarray:
        ids_ = terms.merchant_id.to_numpy(dtype=object)
        return latent_features(oracle.traits(ids_), terms, oracle.category_index(terms.category_id))

    truth = oracle.evaluate(fit_terms.merchant_id.to_numpy(dtype=object), fit_terms, at=at + pd.Timedelta(days=3))
    model = LatentRewardModel().fit(features(fit_terms), truth.reward.to_numpy(float))
    n = settings.bandit.n_candidates
    pred_v = model.predict(features(cand[[*DEAL_TERMS, "merchant_id"]].reset_index(drop=True))).reshape(len(ids), n)
    pred_c = model.predict(features(current[[*DEAL_TERMS, "merchant_id"]].reset_index(drop=True)))
    return np.column_stack([pred_v, pred_c])


def simulate_policy(
    settings: Settings,
    data: Path,
    *,
    rounds: int = 50_000,
    days: int = 90,
    seed: int = 0,
    seeds: int = 1,
    policies: tuple[str, ...] | None = None,
    version: str = "latest",
    without: tuple[str, ...] = (),
    progress: Progress | None = None,
    model: Any = None,
    reps: bool = True,
    drill: str | None = None,
    merchants: int | None = None,
) -> dict[str, Any]:
    """The policy arena (:mod:`aidg.policy.arena`) on the held-out merchants of a simulated world (``without``:
    profile branches switched off for every merchant, as the decision ablation does; ``model``: a trained profile
    with its scorer judged in place of a registered version; ``reps``: reps in the loop, with the autonomy dial;
    ``drill``: ``SEGMENT@DAY``, one segment's suggestions made bad on purpose from that day; ``merchants``: replay
    a seeded subsample of that many held-out merchants)."""
    from aidg.policy.arena import arena
    from aidg.policy.arena_reps import Drill
    from aidg.policy.names import POLICIES

    if rounds < 1 or days < 1 or seeds < 1 or (merchants is not None and merchants < 1):
        raise DataError(f"rounds, days, seeds and merchants must be positive (got {rounds}, {days}, {seeds}, "
                        f"{merchants})")  # fmt: skip
    t0 = time.perf_counter()
    torch.set_num_threads(1)
    say = progress or (lambda s, f: None)
    say("scoring candidates and the current deals", 0.02)
    chosen = tuple(policies) if policies else POLICIES
    data_, meta = arena_data(
        settings, data, days, version, latent_reference="latent_informed" in chosen, records="risk_aware_ts" in chosen,
        drop=frozenset(without), model=model, merchants=merchants,
    )  # fmt: skip
    res = arena(
        data_,
        settings,
        rounds,
        list(range(seed, seed + seeds)),
        chosen,
        progress=lambda name, f: say(f"policy {name}", 0.15 + 0.85 * f),
        reps=reps,
        drill=Drill.parse(drill) if drill else None,
    )
    trust = data_.trust
    res.update(
        {
            "reps_in_loop": reps,
            "rep_trust": "on" if trust is not None and trust.enabled else "off",
            "rounds": rounds,
            "days": days,
            "seeds": seeds,
            "first_seed": seed,
            "variants": data_.n_variants,
            "context_dim": data_.dim,
            "without_branches": sorted(without),
            **meta,
            "seconds": round(time.perf_counter() - t0, 2),
        }
    )
    return res


AUDIT_DECISION_KEYS = ("oracle_gain_share", "gp30_uplift_vs_current", "safety_violation_rate", "override_rate",
                       "cumulative_reward")  # fmt: skip


def audit_privacy(
    settings: Settings,
    data: Path,
    *,
    scale: str = "small",
    seed: int = 0,
    references: int = 2,
    arena_rounds: int = 50_000,
    arena_seeds: int = 1,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The privacy audit (:func:`aidg.compliance.audit.audit_privacy`) with the decisions' price of DP: each model
    (with and without DP) decides for the held-out merchants in the policy arena (``risk_aware_ts`` beside the
    current system, ``arena_rounds`` rounds over ``arena_seeds`` seeds; 0 rounds: no arena)."""
    from aidg.compliance.audit import audit_privacy as run_audit

    if arena_rounds < 0 or arena_seeds < 1:
        raise DataError(f"arena rounds must be ≥ 0 and seeds ≥ 1 (got {arena_rounds}, {arena_seeds})")

    def decisions(pm: Any) -> dict[str, Any]:
        threads = torch.get_num_threads()  # the arena runs on one thread; the next training gets its own back
        try:
            res = simulate_policy(settings, data, rounds=arena_rounds, seed=seed, seeds=arena_seeds,
                                  policies=("current", "risk_aware_ts"), model=pm)  # fmt: skip
        finally:
            torch.set_num_threads(threads)
        ours = res["policies"]["risk_aware_ts"]
        return {**{k: ours[k] for k in AUDIT_DECISION_KEYS}, "policy": "risk_aware_ts", "rounds": arena_rounds,
                "seeds": arena_seeds, "merchants": res["merchants"]}  # fmt: skip

    return run_audit(settings, data, scale, seed, progress, references, decisions if arena_rounds else None)
