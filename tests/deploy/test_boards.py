"""deploy_to_board: the chip's own deployment, or one clear refusal."""

from dataclasses import replace

import pytest

from asa_snn.deploy.boards import deploy_to_board
from asa_snn.errors import AsaSnnError


def test_dispatches_to_the_chips_own_deployment(speck, loihi):
    report = deploy_to_board(speck, "speck", dry_run=True)
    assert report.ok and "speck" in report.summary().lower()
    assert deploy_to_board(loihi, "loihi").to_dict()["runtime"] in ("builtin", "lava-sim")


def test_a_graph_for_another_target_is_refused(speck):
    with pytest.raises(AsaSnnError, match="folded for 'speck', not 'loihi'; fold it with"):
        deploy_to_board(speck, "loihi")
    with pytest.raises(AsaSnnError, match="target 'truenorth' is not a known chip; expected one of"):
        deploy_to_board(replace(speck, target="truenorth"), "truenorth")
