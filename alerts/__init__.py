"""Alert rules, topology-aware suppression, the alert lifecycle and notifiers (see DESIGN.md)."""
