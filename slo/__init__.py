"""SLO specs, SLIs, error budgets, burn rates and flow-health figures (see DESIGN.md)."""
