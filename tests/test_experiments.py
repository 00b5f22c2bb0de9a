"""experiments/asa_claims.py: the mean / spread aggregation over seeds."""

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "experiments" / "asa_claims.py"
_spec = importlib.util.spec_from_file_location("asa_claims", _PATH)
asa_claims = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(asa_claims)


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
