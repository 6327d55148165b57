"""Backtest: replay history, label churn from MRR, and measure how well the health score predicted it."""
