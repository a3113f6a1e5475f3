"""The Kopf operator: `main` holds the decorators, `reconcile` the logic, `builders` the pure objects."""
