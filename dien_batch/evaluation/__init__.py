"""Offline evaluation: ranking and calibration metrics, the DeLong test, auction simulation, bootstrap."""
