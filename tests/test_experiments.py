"""experiments/asa_claims.py and fold_fidelity.py: the mean / spread aggregation over seeds."""

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "experiments" / "asa_claims.py"
_spec = importlib.util.spec_from_file_location("asa_claims", _PATH)
asa_claims = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(asa_claims)
_FOLD_PATH = _PATH.with_name("fold_fidelity.py")
_fold_spec = importlib.util.spec_from_file_location("fold_fidelity", _FOLD_PATH)
fold_fidelity = importlib.util.module_from_spec(_fold_spec)
_fold_spec.loader.exec_module(fold_fidelity)


def test_aggregate_gives_mean_and_min_max_per_recipe_and_kind_skipping_missing_eq11():
    runs = [
        {
            "recipe": "r",
            "seed": s,
            "attention": "none",
            "test_accuracy": a,
            "test_nasfr": 0.2,
            "eq11_delta_e_j": None,
        }
        for s, a in ((0, 0.5), (1, 1.0))
    ] + [
        {
            "recipe": "r",
            "seed": s,
            "attention": "asa2",
            "test_accuracy": 0.9,
            "test_nasfr": n,
            "eq11_delta_e_j": e,
        }
        for s, n, e in ((0, 0.1, -1.0), (1, 0.3, 2.0))
    ]
    summary = asa_claims.aggregate(runs)
    assert summary[("r", "none")]["test_accuracy"] == {"mean": 0.75, "min": 0.5, "max": 1.0, "n": 2}
    assert "eq11_delta_e_j" not in summary[("r", "none")]
    assert summary[("r", "asa2")]["eq11_delta_e_j"] == {"mean": 0.5, "min": -1.0, "max": 2.0, "n": 2}
    assert asa_claims.seed_wins(runs)[("r", "asa2")] == "acc >= 1/2, NASFR < 1/2, delta E < 0 1/2"


def _fold_run(seed: int, model: str, pp: float, spikes: float, accuracy: float) -> dict:
    return {
        "recipe": "r",
        "chip": "speck",
        "seed": seed,
        "model": model,
        "variant": "+distillation",
        "live_accuracy": accuracy,
        "deployed_accuracy": accuracy,
        "accuracy_pp": pp,
        "nasfr_change": 0.0,
        "goal_met": pp >= -1.0,
        "deployed_spikes": spikes,
    }


def test_fold_tables_give_the_mean_and_its_standard_error_over_seeds():
    # accuracy changes -1, 0, +4: mean +1, sample sd sqrt(7), standard error sqrt(7 / 3) = 1.53
    # spike ratios 0.5, 0.7, 0.9: mean 0.7, standard error 0.2 / sqrt(3) = 0.115
    runs = []
    for seed, pp, ratio in ((0, -1.0, 0.5), (1, 0.0, 0.7), (2, 4.0, 0.9)):
        runs += [_fold_run(seed, "asa2", pp, 100 * ratio, 0.9), _fold_run(seed, "none", 0.0, 100, 0.8)]
    table = fold_fidelity.markdown_table(runs)
    assert "| +1.00 ± 1.53 |" in table and "| 2/3 |" in table
    assert "| 0.700 ± 0.115 (s0: 0.50 (0.900 vs 0.800)" in table and "| 2/3 |" in table.split("\n")[-2]
    one_seed = fold_fidelity.markdown_table(runs[:2])
    assert "| -1.00 ± 0.00 |" in one_seed and "| 0.500 ± 0.000 (s0" in one_seed
