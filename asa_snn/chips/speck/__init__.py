"""SynSense Speck (DYNAP-CNN cores): everything about the chip; :mod:`.chip` registers it."""
