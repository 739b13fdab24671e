"""Instrument drivers for labctl: interfaces, real drivers, and simulators behind them."""
