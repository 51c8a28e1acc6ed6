"""Entropy-guided attention pruning of a trained ResoNet ensemble (``tellus prune enso``).

Each member is pruned where its Transformer learned its representation, after pretraining on
the model world (:func:`tellus.training.pruning.prune`: the entropy measured over model-world
samples spread through the run, the chosen blocks' lambda annealed from 1 to 0 during a
fine-tuning on the model world, the attention removed), and then fine-tuned on the observed
years exactly as ``tellus train enso`` fine-tunes (:class:`tellus.enso.train.Budget`), so
the pruned ensemble in ``out`` is an ensemble folder like any other (``member_{k}/
{pretrain,finetune}``, ``ensemble.json``) that ``tellus evaluate enso --workdir out`` and
``tellus forecast enso`` read. The unpruned row of a comparison (0 blocks) runs the same
steps.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from tellus.data import schema, sources
from tellus.enso import model as model_lib
from tellus.enso import skill, train
from tellus.training import pruning, trainer, transfer


@dataclasses.dataclass(frozen=True)
class PrunePlan:
    """One pruning of an ensemble.

    Attributes:
      source: the ensemble folder of ``tellus train enso``.
      out: the pruned ensemble's folder.
      model_store, observed_store: the worlds it was trained on.
      spec: the fraction or the blocks to remove, and the annealing share.
      steps: steps of the pruning fine-tuning on the model world (the same for every row).
      learning_rate: its peak learning rate.
      measure_samples: model-world samples the entropy is measured over.
    """

    source: Path
    out: Path
    model_store: Path
    observed_store: Path
    spec: pruning.PruneSpec = dataclasses.field(default_factory=pruning.PruneSpec)
    steps: int = 300
    learning_rate: float = 5e-4
    measure_samples: int = 2048

    def __post_init__(self) -> None:
        for f in ("source", "out", "model_store", "observed_store"):
            object.__setattr__(self, f, Path(getattr(self, f)))
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


def with_pruned(cfg: model_lib.ResoNetConfig, indices: tuple[int, ...]) -> Any:
    return dataclasses.replace(cfg, pruned=indices)


def forward(model: model_lib.Forecaster, batch: dict[str, Any]) -> Any:
    return model(batch["x"], batch["month"])


def _spread(source: train.SampleSource, n: int, batch_size: int):
    """Batches of ``n`` samples spread evenly through ``source``."""
    picks = np.linspace(0, len(source) - 1, min(n, len(source))).astype(int)

    def iterate():
        for i in range(0, len(picks), batch_size):
            rows = [source[int(j)] for j in picks[i : i + batch_size]]
            if len(rows) == batch_size:
                yield {k: np.stack([r[k] for r in rows]) for k in ("x", "month")}

    return iterate


def prune_ensemble(plan: PrunePlan, show_progress: bool = True) -> dict[str, Any]:
    """Prunes every member (the module docstring); resumable. Returns ``{"members":
    [prune.json records], "pruned": indices of the first member}``.

    Raises:
      FileNotFoundError: ``plan.source`` holds no trained ensemble.
    """
    info_file = plan.source / "ensemble.json"
    if not info_file.exists():
        raise FileNotFoundError(
            f"{plan.source} holds no trained ensemble (no ensemble.json); train it with "
            "`tellus train enso`"
        )
    info = json.loads(info_file.read_text())
    # The pruning runs are not the training: a trace asked of the training is not theirs.
    budget = dataclasses.replace(train.Budget(**info["budget"]), profile_steps=None)
    split = train.ObservedSplit(**info["split"])
    members = sorted(plan.source.glob("member_*"), key=lambda p: int(p.name.split("_")[1]))
    records = []
    for member in members:
        seed = int(member.name.split("_")[1])
        model = train.load_member(member / "pretrain")
        cfg = model.config
        pre = train.samples(str(plan.model_store), cfg, name="model world")
        out = plan.out / member.name
        tcfg = dataclasses.replace(
            train._train_config(plan.steps, budget, plan.learning_rate, seed), validate_every=None
        )
        if show_progress:
            print(f"member {seed}: pruning after pretraining")
        record = pruning.prune(
            model=model,
            model_config=cfg,
            factory=model_lib.make_model,
            source=member / "pretrain",
            source_kind=model_lib.KIND,
            with_pruned=with_pruned,
            forward=forward,
            measure_batches=_spread(pre, plan.measure_samples, budget.batch_size * 8),
            domain=trainer.TrainDomain(
                "enso", train.loss_fn, train.batches(pre, budget.batch_size, seed + 500)
            ),
            train_config=tcfg,
            envelope=train.envelope(pre),
            spec=plan.spec,
            out=out / "pretrain",
            show_progress=show_progress,
        )
        pruned_cfg = with_pruned(cfg, tuple(record["pruned"]))
        observed_meta = sources.open_metadata(str(plan.observed_store))
        times = pd.DatetimeIndex(observed_meta.indexes[schema.TIME])
        ft = train.samples(
            str(plan.observed_store),
            pruned_cfg,
            split.date_ranges(times)["finetune"],
            split.base_period(observed_meta),
            name="observed world",
        )
        if show_progress:
            print(f"member {seed}: fine-tuning on {len(ft)} observed samples")
        trainer.fit(
            transfer.warm_start(out / "pretrain", model_lib.make_model),
            pruned_cfg,
            train._train_config(budget.finetune_steps, budget, budget.finetune_lr, seed),
            trainer.TrainDomain(
                "enso", train.loss_fn, train.batches(ft, budget.batch_size, seed + 1000)
            ),
            out / "finetune",
            envelope=train.envelope(ft),
            show_progress=show_progress,
        )
        records.append(record)
    plan.out.mkdir(parents=True, exist_ok=True)
    info = dict(info, pruned=records[0]["pruned"] if records else [], pruned_from=str(plan.source))
    (plan.out / "ensemble.json").write_text(json.dumps(info, indent=1))
    return {"members": records, "pruned": info["pruned"]}


def correlation(
    workdir: str | Path, observed_ds: xr.Dataset, leads: tuple[int, ...] = (6, 12, 24)
) -> dict[int, float]:
    """The ensemble mean's Nino3.4 correlation on the observed test years at ``leads``
    (months), as ``tellus evaluate enso`` scores it."""
    info = json.loads((Path(workdir) / "ensemble.json").read_text())
    split = train.ObservedSplit(**info["split"])
    models = train.load_ensemble(workdir)
    cfg = models[0].config
    obs = train.to_series(observed_ds, task=train.task_for(cfg, split.base_period(observed_ds)))
    te = split.test_inits(obs)
    test = train.gather(obs, te)
    fc = {"resonet": train.predict(models, test["x"], test["month"])}
    sc = skill.scores(skill.forecast_dataset(fc, test["y"].astype(np.float64), test["month"]))
    corr = sc["correlation"].sel({skill.METHOD: "resonet"})
    return {int(k): float(corr.sel({skill.LEAD: k})) for k in leads}


__all__ = ["PrunePlan", "correlation", "forward", "prune_ensemble", "with_pruned"]
