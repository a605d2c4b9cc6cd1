"""The demo: a simulated omnichannel retailer sending real traffic to a real service."""
