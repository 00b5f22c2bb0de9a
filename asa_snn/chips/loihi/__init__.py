"""Intel Loihi through Lava / lava-dl netx: everything about the chip; :mod:`.chip` registers it."""
