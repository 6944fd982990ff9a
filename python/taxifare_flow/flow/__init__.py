"""The lifecycle flow (Prefect 3), its lock, and the simulation of months passing."""
