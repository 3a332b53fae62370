"""Every MLflow tag, param, metric and artifact name that collatz-hpo writes, each with its reader.

Like ``mlflow.utils.mlflow_tags``: the names in one place. Code that writes one spells it from
here, and code that reads it back calls the reader here, so a name is renamed in one place.
Optuna user attributes live in ``search.keys``; MLflow's own tags (``mlflow.parentRunId``, ...)
in ``mlflow.utils.mlflow_tags``. Nothing here imports MLflow: ``train`` and ``status`` use these
names without its import cost. Readers take MLflow's entities (a run, a model version) as they
come back from the client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from search.stats import Interval

__all__ = [
    "BestFigures",
    "CHECKPOINT_ARTIFACTS",
    "ROLE_TAG",
    "STUDY_TAG",
    "TEST_SCALARS",
    "ModelVersionSource",
    "ParentSummary",
    "class_key",
    "class_metric",
    "class_metrics",
    "flatten_test_metrics",
    "interval_metrics",
    "parse_class_key",
    "parse_class_metric",
    "metrics_json",
    "scalar_metrics",
]

# --- tags of every run (and the experiment's study tag) --------------------------------------
ROLE_TAG = "collatz_hpo.role"  # which kind of run: one of the roles below
STUDY_ROLE, TRIAL_ROLE, EXPORT_ROLE = "study", "trial", "export"  # parent run, child run, export run
STUDY_TAG = "optuna.study_name"  # on the experiment and on every run of the study
TRIAL_NUMBER_TAG = "optuna.trial_number"
TRIAL_STATE_TAG = "optuna.trial_state"  # RUNNING, then the Optuna state the trial ended in
FAIL_REASON_TAG = "fail_reason"
FINAL_TAG = "collatz_hpo.final"  # on a final run: the trial whose configuration it trains
REPLICATE_TAG = "collatz_hpo.replicate_of"  # on a seed replicate ([confirm]): the trial it retrains
RETRY_OF_TAG = "retry_of"  # on a trial run: the failed trial it retries
RESUMED_FROM_TAG = "resumed_from_run"  # on a retried trial's run: the run whose checkpoint it resumed
RESUMED_EPOCH_TAG = "resumed_at_epoch"  # ... after that epoch (its metrics up to it copied over)
DEVICE_TAG = "device"  # on a trial run: the torch device it trained on (cpu, cuda:0)
CUDA_VISIBLE_TAG = "cuda_visible_devices"  # ... and its worker's CUDA_VISIBLE_DEVICES, when set
SOURCE_RUN_TAG = "source_run_id"  # on an export run: the trial run whose checkpoint it exports
CREATE_TOKEN_TAG = "collatz_hpo.create_token"  # a run's creation token (``ResilientClient.create_run``)

#: The experiments of studies (``search_experiments``): every study's experiment has its name tag.
STUDY_EXPERIMENTS_FILTER = f"tags.`{STUDY_TAG}` != ''"


def role_filter(role: str) -> str:
    """``search_runs`` filter of the runs of one role (``TRIAL_ROLE``: a study's trial runs)."""
    return f"tags.`{ROLE_TAG}` = '{role}'"


def token_filter(token: str) -> str:
    """``search_runs`` filter of the run created with ``token``."""
    return f"tags.`{CREATE_TOKEN_TAG}` = '{token}'"


# --- the parent run: the study's objective (params), its progress (tags) and best value -------
METRIC_PARAM = "metric"
DIRECTION_PARAM = "direction"
N_COMPLETE_TAG, N_PRUNED_TAG, N_FAILED_TAG = "n_trials_complete", "n_trials_pruned", "n_trials_failed"
BEST_TRIAL_TAG = "best_trial"
BEST_RUN_TAG = "best_run_id"
BEST_PARAM_PREFIX = "best."  # best.<hyperparameter>: the best trial's params
BEST_VALUE_METRIC = "best_value"  # step: the number of finished trials when it was logged


def objective_params(metric: str, direction: str) -> dict[str, str]:
    """The parent run's params that name the study's objective."""
    return {METRIC_PARAM: metric, DIRECTION_PARAM: direction}


def objective(run: Any) -> tuple[str | None, bool]:
    """The objective metric of a parent run, and whether lower is better (None, False: unknown)."""
    params = run.data.params
    return params.get(METRIC_PARAM), params.get(DIRECTION_PARAM) == "minimize"


@dataclass(frozen=True)
class ParentSummary:
    """What the parent run's tags say of the study: trials per state and the best trial."""

    counts: Mapping[str, int]  # complete, pruned, fail (the keys of ``keys.state_counts``)
    best_trial: int | None = None
    best_run_id: str | None = None
    best_params: dict[str, Any] | None = None  # read back: strings

    def to_tags(self) -> dict[str, Any]:
        tags: dict[str, Any] = {
            N_COMPLETE_TAG: self.counts["complete"],
            N_PRUNED_TAG: self.counts["pruned"],
            N_FAILED_TAG: self.counts["fail"],
        }
        if self.best_trial is not None:
            tags.update({BEST_TRIAL_TAG: self.best_trial, BEST_RUN_TAG: self.best_run_id or ""})
            tags.update({f"{BEST_PARAM_PREFIX}{k}": v for k, v in (self.best_params or {}).items()})
        return tags

    @classmethod
    def of(cls, run: Any) -> ParentSummary:
        """Read back from a parent run (params as strings, as MLflow keeps tags)."""
        tags = run.data.tags
        counts = {"complete": N_COMPLETE_TAG, "pruned": N_PRUNED_TAG, "fail": N_FAILED_TAG}
        best = tags.get(BEST_TRIAL_TAG)
        params = {
            k.removeprefix(BEST_PARAM_PREFIX): v for k, v in tags.items() if k.startswith(BEST_PARAM_PREFIX)
        }
        return cls(
            {state: int(tags.get(tag, 0)) for state, tag in counts.items()},
            int(best) if best is not None else None,
            tags.get(BEST_RUN_TAG) or None,
            params,
        )


def best_value(run: Any) -> float | None:
    """The parent run's latest best objective value."""
    return run.data.metrics.get(BEST_VALUE_METRIC)


# The best trial's figures with their 95 % intervals (``search.stats``): metrics beside best_value
# (same step), the inputs they were measured on and a readable line as tags.
BEST_VALUE_LOW_METRIC, BEST_VALUE_HIGH_METRIC = "best_value_low", "best_value_high"
BEST_TEST_METRIC = "best_test_exact_match"
BEST_TEST_LOW_METRIC, BEST_TEST_HIGH_METRIC = "best_test_exact_match_low", "best_test_exact_match_high"
BEST_VALUE_N_TAG, BEST_TEST_N_TAG = "best_value_n", "best_test_n"  # validation / held-out inputs
BEST_FIGURES_TAG = "best_figures"  # "val_exact_match 97.47 % (97.14–97.76, n=2,000); held-out ..."


@dataclass(frozen=True)
class BestFigures:
    """The best trial's objective (an exact-match objective only) and held-out exact match, each
    with its interval; None where the study has no such figure."""

    value: Interval | None
    test: Interval | None

    def to_metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.value is not None:
            out.update({BEST_VALUE_LOW_METRIC: self.value.low, BEST_VALUE_HIGH_METRIC: self.value.high})
        if self.test is not None:
            t = self.test
            out.update(
                {BEST_TEST_METRIC: t.estimate, BEST_TEST_LOW_METRIC: t.low, BEST_TEST_HIGH_METRIC: t.high}
            )
        return out

    def to_tags(self) -> dict[str, str]:
        tags, shown = {}, []
        if self.value is not None:
            tags[BEST_VALUE_N_TAG] = str(self.value.n)
            shown.append(f"objective {self.value}")
        if self.test is not None:
            tags[BEST_TEST_N_TAG] = str(self.test.n)
            shown.append(f"held-out exact match {self.test}")
        if shown:
            tags[BEST_FIGURES_TAG] = "; ".join(shown)
        return tags

    @classmethod
    def of(cls, run: Any) -> BestFigures:
        """Read back from a parent run (the objective's estimate is ``best_value``)."""
        m, tags = run.data.metrics, run.data.tags
        value = test = None
        if BEST_VALUE_LOW_METRIC in m and BEST_VALUE_N_TAG in tags:
            value = Interval(
                m[BEST_VALUE_METRIC],
                m[BEST_VALUE_LOW_METRIC],
                m[BEST_VALUE_HIGH_METRIC],
                int(tags[BEST_VALUE_N_TAG]),
            )
        if BEST_TEST_METRIC in m and BEST_TEST_N_TAG in tags:
            test = Interval(
                m[BEST_TEST_METRIC],
                m[BEST_TEST_LOW_METRIC],
                m[BEST_TEST_HIGH_METRIC],
                int(tags[BEST_TEST_N_TAG]),
            )
        return cls(value, test)


# --- model versions (and the logged model) of an export ----------------------------------------
@dataclass(frozen=True)
class ModelVersionSource:
    """Where a registered model version came from, and what it scored on which held-out split:
    its tags. ``test`` and ``test_split`` are absent on versions registered before they were."""

    study: str
    trial: int
    run_id: str  # the trial's run
    export_run_id: str  # the run ``export-trial-<n>`` that logged the model
    test_exact_match: float
    test: Interval | None = None  # the held-out exact match with its interval
    test_split: str | None = None  # JSON: config.json's data range, split sizes and seed

    def to_tags(self) -> dict[str, str]:
        tags = {
            **model_tags(self.study, self.trial),
            "run_id": self.run_id,
            "export_run_id": self.export_run_id,
            TEST_EXACT_MATCH: f"{self.test_exact_match:.6f}",
        }
        if self.test is not None:
            tags.update({k: f"{v:.6f}" for k, v in interval_metrics(TEST_EXACT_MATCH, self.test).items()})
            tags[TEST_N_TAG] = str(self.test.n)
        if self.test_split is not None:
            tags[TEST_SPLIT_TAG] = self.test_split
        return tags

    @classmethod
    def of(cls, version: Any) -> ModelVersionSource:
        t = version.tags
        low, high = f"{TEST_EXACT_MATCH}{LOW}", f"{TEST_EXACT_MATCH}{HIGH}"
        rate = float(t[TEST_EXACT_MATCH])
        test = None
        if low in t and high in t and TEST_N_TAG in t:
            test = Interval(rate, float(t[low]), float(t[high]), int(t[TEST_N_TAG]))
        source = (t["study"], int(t["trial"]), t["run_id"], t["export_run_id"], rate)
        return cls(*source, test, t.get(TEST_SPLIT_TAG))


TEST_N_TAG = "test_size"  # on a model version: the held-out inputs its figure was measured on
TEST_SPLIT_TAG = "test_split"  # on a model version: the split's range, sizes and seed (JSON)
LOW, HIGH = "_low", "_high"  # a figure's interval bounds: ``<figure>_low``, ``<figure>_high``


def interval_metrics(name: str, interval: Interval) -> dict[str, float]:
    """``<name>_low`` and ``<name>_high``: the bounds of a figure's 95 % interval."""
    return {f"{name}{LOW}": interval.low, f"{name}{HIGH}": interval.high}


def model_tags(study: str, trial: int) -> dict[str, str]:
    """The logged model's tags (a model version carries them too)."""
    return {"study": study, "trial": str(trial)}


# --- metrics -------------------------------------------------------------------------------------
VAL_EXACT_MATCH = "val_exact_match"  # the per-class prefix of validation curves
TEST_PREFIX = "test_"
TEST_EXACT_MATCH = f"{TEST_PREFIX}exact_match"  # also the per-class prefix of test results
#: The scalar test metrics recorded (``core.compute_collatz_metrics``' numbers, in its order): MLflow
#: metrics ``test_<name>`` of trial and export runs, and config.json's ``test_metrics`` of an export.
TEST_SCALARS = (
    "num_samples",
    "exact_match",
    "token_accuracy",
    "undecodable_rate",
    "num_errors",
    "wrong_loop_length_share",
    "wrong_k_prime_share",
    "wrong_k_share",
    "other_error_share",
    "undecodable_share",
)
_CLASS_METRIC = re.compile(r"^(?P<prefix>.+)_k(?P<k>\d+)_kp(?P<kp>\d+)$")


def class_metric(prefix: str, k: int | str, kp: int | str) -> str:
    """``{prefix}_k{k}_kp{k′}``: the metric of one (k, k′) class (``"*"``: of every class, in text)."""
    return f"{prefix}_k{k}_kp{kp}"


def parse_class_metric(name: str, prefix: str) -> tuple[int, int] | None:
    """(k, k′) of a :func:`class_metric` name with ``prefix``; None for any other name."""
    m = _CLASS_METRIC.match(name)
    return (int(m["k"]), int(m["kp"])) if m and m["prefix"] == prefix else None


def class_metrics(prefix: str, by_class: Mapping[tuple[int, int], Mapping[str, float]]) -> dict[str, float]:
    """``{prefix}_k{k}_kp{k′}`` → exact match of each (k, k′) class."""
    return {class_metric(prefix, k, kp): v["exact_match"] for (k, kp), v in by_class.items()}


def scalar_metrics(test: Mapping[str, Any]) -> dict[str, float]:
    """``test_<name>`` of each of ``TEST_SCALARS`` in ``test`` (the metrics or :func:`metrics_json`)."""
    return {f"{TEST_PREFIX}{k}": float(test[k]) for k in TEST_SCALARS if k in test}


def flatten_test_metrics(test: Mapping[str, Any]) -> dict[str, float]:
    """A trial run's test metrics: the scalars plus exact match per k, per k′ and per (k, k′) class."""
    out = scalar_metrics(test)
    out.update({f"{TEST_EXACT_MATCH}_k{k}": v["exact_match"] for k, v in test.get("by_k", {}).items()})
    out.update({f"{TEST_EXACT_MATCH}_kp{k}": v["exact_match"] for k, v in test.get("by_k_prime", {}).items()})
    out.update(class_metrics(TEST_EXACT_MATCH, test.get("by_class", {})))
    return out


# --- the JSON form of per-class results (an export's config.json, the report's best_trial.json) --
def class_key(k: int, kp: int) -> str:
    """``"k,k′"``: a (k, k′) class as a JSON key."""
    return f"{k},{kp}"


def parse_class_key(key: str) -> tuple[int, int]:
    k, kp = (int(x) for x in key.split(","))
    return k, kp


def metrics_json(test: Mapping[str, Any]) -> dict[str, Any]:
    """The test metrics as JSON (config.json's ``test_metrics``): ``TEST_SCALARS`` as they are,
    and the rates per (k, k′) class (keys :func:`class_key`), per k and per k′ (keys ``"k"``)."""
    out: dict[str, Any] = {k: test[k] for k in TEST_SCALARS if k in test}
    out["by_class"] = {class_key(k, kp): v for (k, kp), v in test.get("by_class", {}).items()}
    out["by_k"] = {str(k): v for k, v in test.get("by_k", {}).items()}
    out["by_k_prime"] = {str(k): v for k, v in test.get("by_k_prime", {}).items()}
    return out


# --- artifacts of a trial run ------------------------------------------------------------------
CHECKPOINT_ARTIFACTS = "checkpoints"  # the folder of best.pt / last.pt
RUN_CONFIG_ARTIFACT = "config.json"  # the study file and the trial's RunConfig (``run``)
#: one row per held-out input: n, kappa, predicted, correct (0/1), k, k_prime
TEST_PREDICTIONS_ARTIFACT = "test_predictions.csv"


def checkpoint_path(name: str = "best.pt") -> str:
    """A checkpoint's artifact path in a trial run."""
    return f"{CHECKPOINT_ARTIFACTS}/{name}"
